"""Prompts render through each family's real chat template, and qwen3_vl_nothink token for token."""

from __future__ import annotations

import pytest

from geovlm.backends.chat import PromptTemplate
from geovlm.backends.hf import HFBackend
from tests.tiny_models import ANSWERS_JA, QUESTION_EN, QUESTION_JA, QUESTION_ZH

QUESTIONS = [QUESTION_EN, QUESTION_JA, QUESTION_ZH]
NOTHINK = (
    "<|im_start|>user\n<|vision_start|>{pads}<|vision_end|>\n{q}<|im_end|>\n<|im_start|>assistant\n"
)


@pytest.mark.parametrize("question", QUESTIONS, ids=["en", "ja", "zh"])
def test_nothink_ids_equal_llamafactory_string(qwen3_vl_backend, chip_images, question):
    for image in chip_images:
        inputs = qwen3_vl_backend.encode([image], [question])
        n_pads = int(inputs["image_grid_thw"][0].prod()) // 4  # merge 2x2
        text = NOTHINK.format(pads="<|image_pad|>" * n_pads, q=question)
        expected = qwen3_vl_backend.tokenizer(text, add_special_tokens=False)["input_ids"]
        assert inputs["input_ids"][0].tolist() == expected


def test_nothink_adds_newline_stock_template_does_not(qwen3_vl_dir, qwen3_vl_backend):
    stock = HFBackend.load(str(qwen3_vl_dir), quantize="none", device="cpu")
    assert stock.chat.render(QUESTION_EN, image=True) == (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
        f"{QUESTION_EN}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert qwen3_vl_backend.chat.render(QUESTION_EN, image=True) == NOTHINK.format(
        pads="<|image_pad|>", q=QUESTION_EN
    )


@pytest.mark.parametrize("question", QUESTIONS, ids=["en", "ja", "zh"])
def test_families_render_real_templates(qwen3_vl_dir, llava_backend, gemma_backend, question):
    stock_qwen = HFBackend.load(str(qwen3_vl_dir), quantize="none", device="cpu")
    assert stock_qwen.chat.render(question, image=True).endswith(
        f"<|vision_end|>{question}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert llava_backend.chat.render(question, image=True) == (
        f"<|im_start|>user\n<image>\n{question}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert gemma_backend.chat.render(question, image=False) == (
        f"<bos><start_of_turn>user\n{question}<end_of_turn>\n<start_of_turn>model\n"
    )


@pytest.mark.parametrize("question", QUESTIONS, ids=["en", "ja", "zh"])
def test_rendered_ids_round_trip(llava_backend, gemma_backend, chip_images, question):
    """Each question's tokens decode back to it; Gemma's prompt starts with exactly one BOS."""
    ids = gemma_backend.encode(None, [question])["input_ids"][0].tolist()
    tok = gemma_backend.tokenizer
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
    assert question in tok.decode(ids)
    llava_ids = llava_backend.encode(chip_images[:1], [question])["input_ids"][0]
    image_id = llava_backend.model.config.image_token_index
    assert int((llava_ids == image_id).sum()) == 16  # 64x64 crop, patch 16, CLS stripped
    assert question in llava_backend.tokenizer.decode(llava_ids)


def test_end_of_turn_tokens(qwen3_vl_backend, llava_backend, gemma_backend):
    for backend, token in [
        (qwen3_vl_backend, "<|im_end|>"),
        (llava_backend, "<|im_end|>"),
        (gemma_backend, "<end_of_turn>"),
    ]:
        ids = backend.answer_ids(ANSWERS_JA[0])
        assert backend.tokenizer.convert_ids_to_tokens(ids[-1]) == token
        assert backend.tokenizer.decode(ids[:-1]) == ANSWERS_JA[0]


def test_unknown_template_lists_options():
    with pytest.raises(ValueError, match="qwen3_vl_nothink"):
        PromptTemplate("chatml")
