"""The README's Python section holds: its example runs, and every public name it lists exists."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pyogrio

README = Path(__file__).resolve().parents[1] / "README.md"


def _section() -> str:
    text = README.read_text()
    return text[text.index("\n## Python\n"):text.index("\n## Development\n")]


def test_the_example_runs_as_written_with_a_tiny_model(qwen3_vl_dir, geotiff_dir, tmp_path,
                                                       monkeypatch, capsys):
    [example] = re.findall(r"```python\n(.*?)```", _section(), re.S)
    out = tmp_path / "out.gpkg"
    code = (example.replace('"xview2-qwen3vl"', repr(str(qwen3_vl_dir)))
            .replace('"scene.tif"', repr(str(geotiff_dir / "rasterio/cogeo.tif")))
            .replace('"out.gpkg"', repr(str(out))))
    assert code.count(str(qwen3_vl_dir)) == code.count(str(out)) == 1
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    exec(compile(code, str(README), "exec"), {})
    written = pyogrio.read_info(out, layer="chips")["features"]
    assert capsys.readouterr().out.split() == [str(written), str(out)]
    assert written > 0


def test_every_listed_name_is_public_where_the_table_says():
    rows = re.findall(r"^\| `(geovlm[^|]*)\| (.*) \|$", _section(), re.M)
    assert len(rows) >= 10
    for modules, names in rows:
        paths = re.findall(r"`([^`]+)`", "`" + modules)
        base = paths[0].rsplit(".", 1)[0] if paths[0].count(".") > 1 else paths[0]
        groups = [group.strip() for group in names.split(";")]
        targets = [paths[0]] + [base + path for path in paths[1:]]
        if len(groups) != len(targets):  # one module holding every name (or its submodules)
            groups, targets = ["; ".join(groups).replace(";", ",")], [paths[0]]
        for target, group in zip(targets, groups, strict=True):
            module = importlib.import_module(target)
            for name in re.findall(r"`([A-Za-z_][\w.]*)`", group):
                if name.endswith(".load"):
                    name = name.rsplit(".", 1)[0]
                if "." in name:  # a submodule's name, e.g. choice.ModelChoice
                    sub, attr = name.rsplit(".", 1)
                    holder = importlib.import_module(f"{target}.{sub}")
                else:
                    holder, attr = module, name
                assert hasattr(holder, attr), f"{target} has no {name}"
                public = getattr(holder, "__all__", None)
                if public is not None and getattr(holder, attr).__module__ == holder.__name__:
                    assert attr in public, f"{name} is not in {holder.__name__}.__all__"
