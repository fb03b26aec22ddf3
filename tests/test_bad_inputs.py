"""Every bad input of the engine ends in one ``Error:`` sentence and exit 2, never a traceback.

Bad model and adapter folders are made by copying the tiny model fixtures and damaging them the
way real folders get damaged: cut downloads, hand-edited configs, files of another model.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner
from rasterio.transform import from_origin
from safetensors.torch import load_file, save_file

from geovlm.backends.base import ModelRun
from geovlm.backends.devices import resolve_device
from geovlm.backends.preflight import plan_model
from geovlm.cli import cli
from geovlm.errors import DeviceError, GeovlmError, ModelFileError, ParameterError
from geovlm.pipeline.plan import RunOptions
from geovlm.pipeline.run_scenes import one_scene
from geovlm.scenes.tiling import TilingOptions
from geovlm.tasks.classify import ClassifySettings, classify_scenes
from tests.helpers import cache_snapshot

SCENE = "rasterio/cogeo.tif"


def _copy(folder: Path, tmp_path: Path, name: str = "damaged") -> Path:
    return Path(shutil.copytree(folder, tmp_path / name))


def _edit_json(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _assert_one_error_line(result, message: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and message in lines[0]
    assert "Traceback" not in result.output


def _no_cuda_device() -> str:
    """A CUDA device this machine lacks: any on a CPU machine, one past the last GPU else."""
    return f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda:0"


# Each case: the damage done to a copy of the tiny Qwen3-VL (returning the --model and --adapter
# to pass), extra options, the words the error must contain, and whether plan_model (no weights
# read) already refuses it.
Damage = Callable[[Path, Path, Path, Path], tuple[Path, Path | None]]


def _model_only(edit: Callable[[Path], None]) -> Damage:
    def damage(qwen, adapter, gemma, tmp_path):
        folder = _copy(qwen, tmp_path)
        edit(folder)
        return folder, None

    return damage


def _adapter_only(edit: Callable[[Path, Path, Path], Path]) -> Damage:
    def damage(qwen, adapter, gemma, tmp_path):
        return qwen, edit(adapter, gemma, tmp_path)

    return damage


def _empty(folder: Path) -> None:
    for file in folder.iterdir():
        file.unlink()


def _other_weights(gemma: Path) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        shutil.copy(gemma / "model.safetensors", folder / "model.safetensors")

    return edit


def _gemma_adapter(adapter, gemma, tmp_path) -> Path:
    from tests.tiny_models import build_lora_adapter

    return build_lora_adapter(gemma, tmp_path / "gemma_lora")


def _unknown_base(folder: Path, **changes: object) -> None:
    """The base moves off this machine (as on a user's), so only loading can find the misfit."""
    _edit_json(folder / "adapter_config.json", base_model_name_or_path="example-org/other-base",
               **changes)


def _no_matching_module(adapter, gemma, tmp_path) -> Path:
    folder = _copy(adapter, tmp_path, "gpt2_lora")
    _unknown_base(folder, target_modules=["c_attn", "c_proj"])
    return folder


def _other_shapes(adapter, gemma, tmp_path) -> Path:
    folder = _copy(adapter, tmp_path, "wide_lora")
    _unknown_base(folder)
    weights = load_file(folder / "adapter_model.safetensors")
    wider = {k: torch.zeros(v.shape[0], v.shape[1] + 8) if "lora_A" in k else v
             for k, v in weights.items()}
    save_file(wider, folder / "adapter_model.safetensors")
    return folder


def _other_module_names(adapter, gemma, tmp_path) -> Path:
    folder = _copy(_gemma_adapter(adapter, gemma, tmp_path), tmp_path, "moved_gemma_lora")
    _unknown_base(folder)
    return folder


def _damaged_adapter(edit: Callable[[Path], None]) -> Callable[[Path, Path, Path], Path]:
    def damage(adapter, gemma, tmp_path) -> Path:
        folder = _copy(adapter, tmp_path, "damaged_lora")
        edit(folder / "adapter_model.safetensors")
        return folder

    return damage


def _not_an_adapter(adapter, gemma, tmp_path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "README.md").write_text("my adapter will go here")
    return folder


CASES = {
    "empty folder": (_model_only(_empty), [], "holds no config.json", True),
    "unknown model_type": (
        _model_only(lambda f: _edit_json(f / "config.json", model_type="qwen9_vl")), [],
        "names model_type 'qwen9_vl', which transformers", True),
    "no model_type": (
        _model_only(lambda f: _edit_json(f / "config.json", model_type=None)), [],
        "names no model_type", True),
    "corrupt config.json": (
        _model_only(lambda f: _truncate(f / "config.json")), [], "is not valid JSON", True),
    "truncated weights": (
        _model_only(lambda f: _truncate(f / "model.safetensors")), [], "truncated or corrupt",
        True),
    "no weights": (
        _model_only(lambda f: (f / "model.safetensors").unlink()), [], "holds no weights", True),
    "corrupt tokenizer.json": (
        _model_only(lambda f: _truncate(f / "tokenizer.json")), [], "is not valid JSON", True),
    "no tokenizer": (
        _model_only(lambda f: [p.unlink() for p in f.glob("tokenizer*")]), [],
        "holds no tokenizer", True),
    "adapter of a local other base": (
        _adapter_only(_gemma_adapter), [], "was trained for base", True),
    "adapter matching no module": (
        _adapter_only(_no_matching_module), [],
        "was trained for base example-org/other-base (adapter_config.json", False),
    "adapter of other shapes": (
        _adapter_only(_other_shapes), [], "was trained for base example-org/other-base", False),
    "adapter of other module names": (
        _adapter_only(_other_module_names), [], "was trained for base example-org/other-base",
        False),
    "truncated adapter weights": (
        _adapter_only(_damaged_adapter(_truncate)), [], "truncated or corrupt", True),
    "adapter without weights": (
        _adapter_only(_damaged_adapter(Path.unlink)), [], "holds no adapter weights", True),
    "folder that is no adapter": (
        _adapter_only(_not_an_adapter), [], "exists but holds no adapter_config.json", True),
    "adapter file instead of its folder": (
        lambda qwen, adapter, gemma, tmp_path: (qwen, adapter / "adapter_model.safetensors"), [],
        "is a file, but --adapter takes a folder", True),
    "model folder as adapter": (
        lambda qwen, adapter, gemma, tmp_path: (qwen, qwen), [],
        "exists but holds no adapter_config.json", True),
    "device nonsense": (
        lambda qwen, *_: (qwen, None), ["--device", "nonsense"], "does not run on nonsense", True),
    "device of another kind": (
        lambda qwen, *_: (qwen, None), ["--device", "meta"], "does not run on meta", True),
    "absent CUDA device": (
        lambda qwen, *_: (qwen, None), ["--device", _no_cuda_device()], "GPU", True),
    "adapter and no adapter": (
        lambda qwen, adapter, *_: (qwen, adapter), ["--no-adapter"], "pass one", False),
    "gsd and native gsd": (
        lambda qwen, *_: (qwen, None), ["--gsd", "2", "--native-gsd"], "pass one", False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_model_or_adapter_is_one_error_line(
    case, qwen3_vl_dir, qwen3_vl_adapter_dir, gemma_text_dir, geotiff_dir, tmp_path
):
    damage, extra, message, _ = CASES[case]
    model, adapter = damage(qwen3_vl_dir, qwen3_vl_adapter_dir, gemma_text_dir, tmp_path)
    out = tmp_path / "o.gpkg"
    args = ["classify", str(geotiff_dir / SCENE), "-o", str(out), "--model", str(model),
            "--quantize", "none", "--size", "256", "-q"]
    args += ["--adapter", str(adapter)] if adapter is not None else []
    args += extra if extra else ["--device", "cpu"]
    _assert_one_error_line(CliRunner().invoke(cli, args), message)
    assert not out.exists()


@pytest.mark.parametrize("case", [name for name, spec in CASES.items() if spec[3]])
def test_checkable_inputs_are_refused_before_any_weights_load(
    case, qwen3_vl_dir, qwen3_vl_adapter_dir, gemma_text_dir, tmp_path
):
    damage, extra, message, _ = CASES[case]
    model, adapter = damage(qwen3_vl_dir, qwen3_vl_adapter_dir, gemma_text_dir, tmp_path)
    device = extra[1] if extra else "cpu"
    with pytest.raises(GeovlmError, match=message.replace("(", r"\(")):
        plan_model(str(model), adapter=None if adapter is None else str(adapter),
                   quantize="none", device=device)


@pytest.mark.parametrize(
    ("make", "library_error"),
    [(_no_matching_module, "NoMatchingPeftModuleError"), (_other_shapes, "RuntimeError"),
     (_other_module_names, "UserWarning")],
)
def test_adapter_misfits_are_what_peft_reports(
    make, library_error, qwen3_vl_dir, qwen3_vl_adapter_dir, gemma_text_dir, tmp_path
):
    from geovlm.backends.loading import load_model

    adapter = make(qwen3_vl_adapter_dir, gemma_text_dir, tmp_path)
    plan_model(str(qwen3_vl_dir), adapter=str(adapter), quantize="none", device="cpu")
    with pytest.raises(GeovlmError, match="was trained for base") as caught:
        load_model(str(qwen3_vl_dir), adapter=str(adapter), quantize="none", device="cpu")
    assert type(caught.value.__context__).__name__ == library_error


def test_device_strings():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ParameterError, match="use cpu, cuda, cuda:N"):
        resolve_device("gpu0")
    with pytest.raises(DeviceError, match="GPU"):
        resolve_device(_no_cuda_device())
    if not torch.backends.mps.is_available():
        with pytest.raises(DeviceError, match="MPS"):
            resolve_device("mps")


def _write_complex(path: Path, dtype: str) -> Path:
    profile = {"driver": "GTiff", "width": 64, "height": 64, "count": 1, "dtype": dtype,
               "crs": "EPSG:32618", "transform": from_origin(500000, 4000000, 1, 1)}
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(np.full((1, 64, 64), 3 + 4j, dtype=np.complex64))
    return path


@pytest.mark.parametrize("dtype", ["complex64", "complex_int16"])
def test_complex_raster_is_refused_and_the_advice_works(dtype, tmp_path, monkeypatch):
    scene = _write_complex(tmp_path / "slc.tif", dtype)
    out = tmp_path / "o.gpkg"
    result = CliRunner().invoke(cli, ["tile", str(scene), "-o", str(out), "--size", "32"])
    _assert_one_error_line(result, "has complex-valued pixels")
    assert not out.exists()
    if shutil.which("gdal_calc.py") is None:
        pytest.skip("gdal_calc.py not installed: cannot follow the advice")
    command = result.stderr.split("`")[1]
    monkeypatch.chdir(tmp_path)
    subprocess.run(shlex.split(command), check=True, capture_output=True)
    with rasterio.open(tmp_path / "amplitude.tif") as amplitude:
        assert amplitude.dtypes[0] == "float32"
        assert np.allclose(amplitude.read(1), 5.0)  # |3 + 4j|
    again = CliRunner().invoke(cli, ["tile", "amplitude.tif", "-o", str(out), "--size", "32"])
    assert again.exit_code == 0, again.output


def _cli_process(prelude: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh interpreter, after ``prelude`` ran (as a site hook would)."""
    code = f"{prelude}\nfrom geovlm.cli import main\nmain()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=300)


def test_4bit_without_bitsandbytes_is_one_sentence(qwen3_vl_dir, geotiff_dir, tmp_path):
    # A None entry in sys.modules is exactly how Python sees a package that is not installed.
    out = tmp_path / "o.gpkg"
    process = _cli_process(
        "import sys; sys.modules['bitsandbytes'] = None",
        "classify", str(geotiff_dir / SCENE), "-o", str(out), "--model", str(qwen3_vl_dir),
        "--quantize", "4bit", "--device", "cpu", "-q",
    )
    lines = [line for line in process.stderr.splitlines() if line.strip()]
    assert process.returncode == 2, process.stderr
    assert lines == [lines[0]] and lines[0].startswith("Error: --quantize 4bit needs")
    assert "pip install bitsandbytes" in lines[0] and "--quantize none" in lines[0]
    assert not out.exists()


def test_a_clean_run_says_nothing_on_stderr(
    qwen3_vl_dir, qwen3_vl_adapter_dir, geotiff_dir, tmp_path
):
    """bitsandbytes, peft and transformers notices that ask nothing of the user stay quiet."""
    process = _cli_process(
        "", "classify", str(geotiff_dir / SCENE), "-o", str(tmp_path / "o.gpkg"), "--model",
        str(qwen3_vl_dir), "--adapter", str(qwen3_vl_adapter_dir), "--quantize", "4bit",
        "--device", "cpu", "--size", "256", "--batch-size", "8", "-q",
    )
    assert process.returncode == 0, process.stderr
    assert process.stderr == ""


class _SmallGPU:
    """A `Backend` on a GPU that holds at most ``capacity`` chips per call, like a real one.

    It runs the tiny model and raises what torch raises when a batch does not fit.
    """

    def __init__(self, backend, capacity: int) -> None:
        self.backend = backend
        self.capacity = capacity
        self.supports_images = backend.supports_images

    def _fits(self, inputs) -> None:
        if inputs["image_grid_thw"].shape[0] > self.capacity:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def encode(self, images, prompts):
        return self.backend.encode(images, prompts)

    def score_encoded(self, inputs, answers):
        self._fits(inputs)
        return self.backend.score_encoded(inputs, answers)

    def generate_encoded(self, inputs, max_new_tokens=32):
        self._fits(inputs)
        return self.backend.generate_encoded(inputs, max_new_tokens)

    def score(self, images, prompt, answers):
        return self.backend.score(images, prompt, answers)

    def generate(self, images, prompts, max_new_tokens=32):
        return self.backend.generate(images, prompts, max_new_tokens)


def test_out_of_gpu_memory_says_lower_the_batch_size(
    qwen3_vl_dir, qwen3_vl_backend, geotiff_dir, tmp_path
):
    # 512 px chips: the scene's 4 chips are all read when the first batch of 4 fails, so no
    # read is in flight while the tiler closes (that race is the tiler's, issue 6 section 4).
    def classify(batch_size: int, out: Path):
        return classify_scenes(
            one_scene(geotiff_dir / SCENE, TilingOptions(512)),
            RunOptions(out, batch_size=batch_size),
            ModelRun(lambda: _SmallGPU(qwen3_vl_backend, capacity=2)),
            ClassifySettings(),
        )

    with pytest.raises(DeviceError) as caught:
        classify(4, tmp_path / "big.gpkg")
    assert str(caught.value) == "out of GPU memory at batch size 4; lower --batch-size."
    assert classify(2, tmp_path / "small.gpkg").written == 4  # the advice works


def test_partly_cached_hub_model_reads_as_not_downloaded(monkeypatch, tmp_path, qwen3_vl_dir):
    """A cache holding config.json only (an interrupted download) is not a broken folder."""
    import huggingface_hub.constants

    from geovlm.backends.preflight import _locate
    from geovlm.errors import ModelNotFoundError

    snapshot = cache_snapshot(tmp_path, "tiny/partial")
    shutil.copy(qwen3_vl_dir / "config.json", snapshot)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotFoundError) as caught:
        plan_model("tiny/partial", quantize="none", device="cpu")
    message = str(caught.value)
    assert message.startswith(
        "model 'tiny/partial' is incomplete in the Hugging Face cache (no weights: an"
        " interrupted download) and cannot be downloaded offline"
    )
    assert "`hf download tiny/partial`" in message and "\n" not in message
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    assert _locate("model", "tiny/partial", "--model") == "tiny/partial"  # the hub resumes it
    for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(qwen3_vl_dir / name, snapshot)
    assert _locate("model", "tiny/partial", "--model") == str(snapshot)


def test_model_folder_with_a_missing_shard(tmp_path, qwen3_vl_dir):
    """A sharded checkpoint missing one shard its index names has no complete weights."""
    folder = tmp_path / "sharded"
    shutil.copytree(qwen3_vl_dir, folder)
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    index = {"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                             "b": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ModelFileError, match="holds no weights"):
        plan_model(str(folder), quantize="none", device="cpu")


def test_device_names_are_checked_without_torch():
    code = ("import sys; from geovlm.backends.devices import check_device_name as c;"
            " c('cuda:1'); c('cpu'); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
