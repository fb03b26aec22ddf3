"""Several images per prompt: placeholders, fast path, batching, refusals and grade scoring."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from geovlm.backends.grade_scoring import GradeScorer, grade_probabilities
from geovlm.errors import ParameterError
from geovlm.labels.building_damage import building_question
from geovlm.labels.calibration import Calibration
from geovlm.labels.grade_forms import DAMAGE_GRADES
from geovlm.labels.verbalizer import Verbalizer
from tests.test_backend_scoring import _brute_force_logp, _softmax


@pytest.fixture(scope="module")
def crops() -> list[Image.Image]:
    """Six 64 px RGB crops (pre and post of three buildings), the size the fast path takes."""
    rng = np.random.default_rng(7)
    return [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(6)]


@pytest.fixture(scope="module")
def buildings(crops) -> list:
    """Mixed prompts: two (pre, post) pairs and one post crop alone."""
    return [(crops[0], crops[1]), crops[2], (crops[3], crops[4])]


def test_two_images_render_two_placeholders_in_order(qwen3_vl_backend, llava_backend):
    question = building_question("en")
    for backend in (qwen3_vl_backend, llava_backend):
        two = backend.chat.render(question, image=2)
        one = backend.chat.render(question, image=True)
        pad = backend.loaded.processor.image_token
        assert two.count(pad) == 2 and one.count(pad) == 1
        assert two.index(pad) < two.rindex(pad) < two.index(question)


def test_fast_path_equals_the_processor_on_two_image_prompts(qwen3_vl_backend, buildings):
    encoder = qwen3_vl_backend.encoder
    assert encoder._patches is not None
    prompts = [building_question("en", with_pre=not isinstance(b, Image.Image)) for b in buildings]
    fast = qwen3_vl_backend.encode(buildings, prompts)
    assert encoder._patches is not None and 2 in encoder._patches_checked
    counts = [1 if isinstance(b, Image.Image) else 2 for b in buildings]
    texts = [qwen3_vl_backend.chat.render(p, image=n) for p, n in zip(prompts, counts,
                                                                      strict=True)]
    flat = [im for b in buildings for im in ((b,) if isinstance(b, Image.Image) else b)]
    reference = encoder._processor(texts, flat)
    assert fast.keys() == reference.keys()
    for key in reference:
        assert torch.equal(fast[key], reference[key]), key
    assert fast["image_grid_thw"].shape[0] == 5


def test_a_mixed_batch_scores_as_each_prompt_alone(qwen3_vl_backend, buildings):
    scorer = GradeScorer("en")
    batched = grade_probabilities(qwen3_vl_backend, buildings, "en")
    assert batched.shape == (3, 4) and batched.dtype == np.float64
    np.testing.assert_allclose(batched.sum(axis=1), 1.0, atol=1e-12)
    for row, building in zip(batched, buildings, strict=True):
        alone = scorer.probabilities(qwen3_vl_backend, scorer.encode(qwen3_vl_backend, [building]))
        np.testing.assert_allclose(alone[0], row, atol=1e-5)
    assert np.array_equal(batched, grade_probabilities(qwen3_vl_backend, buildings, "en"))


def test_two_image_scores_equal_brute_force(qwen3_vl_backend, buildings):
    question = building_question("zh")
    answers = GradeScorer("zh").answers
    fast = qwen3_vl_backend.score([buildings[0]], question, answers)
    slow = _softmax(_brute_force_logp(qwen3_vl_backend, buildings[0], question, answers))
    np.testing.assert_allclose(fast[0], slow, atol=1e-5)


def test_the_pre_crop_changes_the_answer(qwen3_vl_backend, crops):
    with_pre = grade_probabilities(qwen3_vl_backend, [(crops[0], crops[1])], "ja")
    other_pre = grade_probabilities(qwen3_vl_backend, [(crops[5], crops[1])], "ja")
    assert not np.allclose(with_pre, other_pre)


def test_calibration_and_preset_forms_apply(qwen3_vl_backend, buildings):
    raw = grade_probabilities(qwen3_vl_backend, buildings, "en")
    calibration = Calibration(2.0, (0.3, 0.0, 0.0, -0.3), labels=DAMAGE_GRADES)
    calibrated = grade_probabilities(qwen3_vl_backend, buildings, "en", calibration=calibration)
    np.testing.assert_allclose(calibrated, calibration.apply(raw), atol=1e-12)
    custom = Verbalizer.from_mapping({"en": {"destroyed": ["Rubble"]}}, labels=DAMAGE_GRADES)
    assert GradeScorer("en", custom).answers[-1] == "Rubble"
    assert grade_probabilities(qwen3_vl_backend, buildings, "en", verbalizer=custom).shape == (3, 4)


def test_one_image_models_refuse_two_images(llava_backend, buildings):
    with pytest.raises(ParameterError, match="reads one image per prompt"):
        grade_probabilities(llava_backend, buildings, "en")
    assert grade_probabilities(llava_backend, [buildings[1]], "en").shape == (1, 4)


@pytest.mark.parametrize(("bad", "match"), [
    ((), "a building comes with 0 images"),
    ("triple", "a building comes with 3 images"),
])
def test_bad_buildings_are_one_sentence(qwen3_vl_backend, crops, bad, match):
    item = crops[:3] if bad == "triple" else bad
    with pytest.raises(ParameterError, match=match):
        GradeScorer("en").encode(qwen3_vl_backend, [item])


def test_the_scorer_refuses_disaster_forms_and_calibrations():
    with pytest.raises(ParameterError, match="damage-grade answer forms"):
        GradeScorer("en", Verbalizer.default())
    with pytest.raises(ParameterError, match="disaster types, not damage grades"):
        GradeScorer("en", calibration=Calibration(1.0, (0.0,) * 6))


def test_a_served_model_scores_two_images_as_in_process(live_server, served_qwen3_vl,
                                                        buildings):
    """Pre and post go as two image parts of one user message; geovlm serve reads both."""
    from geovlm.backends.openai import OpenAIBackend
    from tests.serve_fixtures import API_KEY

    local_backend = served_qwen3_vl.engine.backend  # the served weights and chat format
    remote = OpenAIBackend.connect(live_server.url, api_key=API_KEY, method="prompt-logprobs")
    local = grade_probabilities(local_backend, buildings, "ja")
    served = grade_probabilities(remote, buildings, "ja")
    np.testing.assert_allclose(served, local, atol=1e-4)
    question = [building_question("en")]
    assert (remote.generate([buildings[0]], question, max_new_tokens=4)
            == local_backend.generate([buildings[0]], question, max_new_tokens=4))


def test_a_served_one_image_model_refuses_two_with_400(llava_backend, buildings):
    import httpx

    from geovlm.serve.app import ServedModel
    from geovlm.serve.engine import ModelEngine
    from tests.serve_fixtures import API_KEY, LiveServer, data_url

    served = ServedModel("llava", "tiny-llava", ModelEngine(llava_backend), Verbalizer.default())
    server = LiveServer(served, api_key=API_KEY).start()
    try:
        parts = [{"type": "image_url", "image_url": {"url": data_url(im)}} for im in buildings[0]]
        body = {"model": "llava", "max_tokens": 1, "messages": [
            {"role": "user", "content": [*parts, {"type": "text", "text": "?"}]}]}
        reply = httpx.post(f"{server.url}/chat/completions", json=body,
                           headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
    finally:
        server.stop()
    assert reply.status_code == 400
    assert "reads one image per prompt" in reply.json()["error"]["message"]
