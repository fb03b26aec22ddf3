"""geovlm as a user gets it: a built wheel installed into a fresh venv, run outside the checkout.

The wheel is built once per module from a copy of the source (the checkout gets no ``build/``),
without network or build isolation, and installed with ``--no-deps --no-index`` into a venv
that sees this environment's packages through a ``.pth`` file, so torch is never reinstalled.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("gemma-aerial", "vqwen3-4b", "xview2-qwen3vl")
_PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]


#: The environment without the test run's PYTHONPATH, which puts the checkout in sight.
_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def _run(*command: str | Path, **kwargs) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("env", _ENV)
    return subprocess.run([str(part) for part in command], capture_output=True, text=True,
                          check=True, timeout=120, **kwargs)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of the working tree, built by pip offline."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(REPO / "geovlm", source / "geovlm",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    _run(*_PIP, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", root, source)
    [built] = root.glob("geovlm-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path) -> Path:
    """A fresh venv with only the wheel installed; the dependencies come from this one."""
    venv = wheel.parent / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    _run(*_PIP, "--python", python, "install", "--no-deps", "--no-index", wheel)
    site = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    ours = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    (Path(site.stdout.strip()) / "geovlm-test-dependencies.pth").write_text("\n".join(ours))
    return venv


def test_installed_geovlm_lists_shipped_and_site_presets(venv, tmp_path):
    site = tmp_path / "site-presets"
    site.mkdir()
    (site / "mine.yaml").write_text(
        "name: mine\nmodel_id: org/mine\nfamily: qwen3_vl\nchip_size: 256\nsupports_images: true\n"
    )
    env = dict(_ENV)
    env.update(GEOVLM_PRESETS=str(site), HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    geovlm = shutil.which("geovlm", path=str(venv / ("Scripts" if os.name == "nt" else "bin")))
    assert geovlm is not None
    result = _run(geovlm, "models", cwd=tmp_path, env=env)  # the checkout is not in sight
    files = [line.split()[1:] for line in result.stdout.splitlines() if line.startswith("    file")]
    origins = {Path(path).stem: origin for path, origin, *_ in files}
    assert origins == {**dict.fromkeys(SHIPPED, "(shipped)"), "mine": "(site)"}
    for path, origin, *_ in files:  # shipped files come from the venv, not from the checkout
        parent = site if origin == "(site)" else venv
        assert Path(path).is_relative_to(parent), path
    assert "xview2-qwen3vl (default)" in result.stdout and "org/mine" in result.stdout


def test_wheel_pins_no_torch_build_and_caps_transformers(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [metadata] = [name for name in names if name.endswith(".dist-info/METADATA")]
        requires = Parser().parsestr(archive.read(metadata).decode()).get_all("Requires-Dist")
    assert sorted(n for n in names if n.startswith("geovlm/presets/")) == [
        f"geovlm/presets/{name}.yaml" for name in SHIPPED
    ]
    assert sorted(n for n in names if n.startswith("geovlm/train_configs/")) == [
        "geovlm/train_configs/qwen3vl_8b_xview2_4bit.yaml", "geovlm/train_configs/tiny-cpu.yaml"
    ]
    runtime = {req.split(";")[0].replace(" ", "") for req in requires if "extra ==" not in req}
    by_name = {req.split("<")[0].split(">")[0].split("=")[0]: req for req in runtime}
    assert "==" not in by_name["torch"] and "==" not in by_name["torchvision"]
    assert ">=" in by_name["torch"] and ">=" in by_name["torchvision"]
    assert "<" in by_name["transformers"]
