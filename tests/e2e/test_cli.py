"""End-to-end tests of the ``lumos`` command: the real command in a subprocess, with a private cache dir."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import lumos

GRADIENT_METHODS = sorted(info["name"] for info in lumos.method_info() if info["family"] == "gradient")


def run_lumos(*args: str, cache: Path, cwd: Path | None = None, module: str = "lumos",
              timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m lumos ARGS`` with ``LUMOS_CACHE_DIR=cache``; returns the finished process."""
    env = dict(os.environ, LUMOS_CACHE_DIR=str(cache), LUMOS_PROGRESS="0")
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


# ------------------------------------------------------------------------------------------ fast commands


@pytest.mark.parametrize("module", ["lumos", "lumos.cli"])
def test_version(tmp_path: Path, module: str) -> None:
    proc = run_lumos("--version", cache=tmp_path, module=module)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"lumos {lumos.__version__}"


def test_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("lumos")
    if not script.exists():
        pytest.skip("the `lumos` console script is not installed next to this interpreter")
    env = dict(os.environ, LUMOS_CACHE_DIR=str(tmp_path))
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"lumos {lumos.__version__}"


def test_methods_lists_every_registered_method(tmp_path: Path) -> None:
    proc = run_lumos("methods", cache=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:4] == ["name", "family", "needs", "reference"]
    listed = {line.split()[0] for line in lines[2:] if line.strip()}
    assert listed == set(lumos.method_names())
    rows = {line.split()[0]: line for line in lines[2:]}
    for info in lumos.method_info():
        assert info["family"] in rows[info["name"]]
        assert info["reference"] in rows[info["name"]]
    assert "baseline" in rows["integrated_gradients"]
    assert "seed" in rows["smoothgrad"]


def test_methods_json_is_the_registry(tmp_path: Path) -> None:
    proc = run_lumos("methods", "--json", cache=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == lumos.method_info()


USAGE_ERRORS = [
    (),
    ("nosuchcommand",),
    ("methods", "--bogus"),
    ("demo", "--seed", "-1"),
    ("demo", "--seed", "abc"),
    ("demo", "--out"),
]


@pytest.mark.parametrize("args", USAGE_ERRORS)
def test_usage_errors_exit_2(tmp_path: Path, args: tuple[str, ...], monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture) -> None:
    from lumos.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LUMOS_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert "usage: lumos" in captured.err
    assert not (tmp_path / "lumos-demo").exists()


def test_usage_error_of_the_real_command(tmp_path: Path) -> None:
    proc = run_lumos("demo", "--seed", "-1", cache=tmp_path, cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "usage: lumos demo" in proc.stderr and "--seed" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "lumos-demo").exists()


def test_lumos_error_exits_1_with_one_line(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file.txt"
    not_a_dir.write_text("x")
    proc = run_lumos("demo", "--out", str(not_a_dir), cache=tmp_path / "cache")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("lumos: error: ")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr
    assert str(not_a_dir) in proc.stderr


# ------------------------------------------------------------------------------------------ the demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One first (training) run of ``lumos demo`` shared by the demo tests."""
    root = tmp_path_factory.mktemp("demo")
    cache, out = root / "cache", root / "out"
    start = time.perf_counter()
    proc = run_lumos("demo", "--out", str(out), cache=cache, cwd=root)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    return {"root": root, "cache": cache, "out": out, "proc": proc, "seconds": seconds, "summary": summary}


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow
def test_demo_writes_a_heatmap_grid(demo: dict) -> None:
    png = demo["out"] / "heatmaps.png"
    width, height = png_size(png)
    assert width > 500 and height > 800  # 1 + 9 rows of 6 cells
    assert png.stat().st_size > 30_000
    assert str(png) in demo["proc"].stdout


@pytest.mark.slow
def test_demo_prints_the_table_and_accuracy(demo: dict) -> None:
    stdout = demo["proc"].stdout
    assert "training the digits CNN" in stdout
    assert "test accuracy:" in stdout
    table = stdout[stdout.index("method "):]
    for name in GRADIENT_METHODS:
        assert any(line.startswith(name + " ") for line in table.splitlines()), name
    assert demo["summary"]["test_accuracy"] > 0.95
    assert demo["seconds"] < 120


@pytest.mark.slow
def test_demo_summary_covers_every_gradient_method(demo: dict) -> None:
    rows = {row["method"]: row for row in demo["summary"]["methods"]}
    assert sorted(rows) == GRADIENT_METHODS
    for name, row in rows.items():
        assert row["skipped"] is None, (name, row["skipped"])
        assert row["seconds"] >= 0 and row["residual_definition"]
    ig = rows["integrated_gradients"]
    assert ig["relative_residual"] < 1e-2
    assert ig["max_relative_residual"] < 5e-2
    assert rows["saliency"]["residual"] is None  # no completeness property: reported as n/a


@pytest.mark.slow
def test_demo_explanations_load_back(demo: dict) -> None:
    images = demo["summary"]["images"]
    n = len(images["labels"])
    for name in GRADIENT_METHODS:
        e = lumos.load(demo["out"] / f"{name}.npz")
        assert e.method == name
        assert tuple(e.attributions.shape) == (n, 1, 8, 8)
        assert tuple(e.inputs.shape) == (n, 1, 8, 8)
        assert np.isfinite(np.asarray(e.attributions)).all()
        np.testing.assert_array_equal(e.targets, images["labels"])
        assert float(e.inputs.min()) >= 0.0 and float(e.inputs.max()) <= 1.0
    ig = lumos.load(demo["out"] / "integrated_gradients.npz")
    total = ig.attributions.reshape(n, -1).sum(1).double()
    gap = torch.as_tensor(ig.scores).double() - torch.as_tensor(ig.extras["baseline_scores"]).double()
    assert float(((total - gap).abs() / gap.abs()).mean()) < 1e-2


@pytest.mark.slow
def test_demo_second_run_uses_the_cache_and_reproduces(demo: dict) -> None:
    cache_files = sorted(demo["cache"].glob("*.pt"))
    assert len(cache_files) == 1
    state = torch.load(cache_files[0], weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())

    out2 = demo["root"] / "out2"
    start = time.perf_counter()
    proc = run_lumos("demo", "--out", str(out2), cache=demo["cache"], cwd=demo["root"])
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cached" in proc.stdout and "training the digits CNN" not in proc.stdout
    assert json.loads((out2 / "summary.json").read_text())["model_cached"] is True
    assert demo["summary"]["model_cached"] is False
    assert seconds < 60
    for name in GRADIENT_METHODS:  # same weights, same seeds: the same attributions
        first = lumos.load(demo["out"] / f"{name}.npz").attributions
        second = lumos.load(out2 / f"{name}.npz").attributions
        torch.testing.assert_close(second, first, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_demo_quiet_prints_only_the_png_path_of_the_default_out_dir(demo: dict, tmp_path: Path) -> None:
    proc = run_lumos("demo", "--quiet", cache=demo["cache"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == str(Path("lumos-demo") / "heatmaps.png")
    for name in ("heatmaps.png", "summary.json", *(f"{m}.npz" for m in GRADIENT_METHODS)):
        assert (tmp_path / "lumos-demo" / name).exists(), name


@pytest.mark.slow
def test_demo_retrains_over_a_corrupt_cache(demo: dict) -> None:
    cache = demo["root"] / "corrupt-cache"
    cache.mkdir()
    (cache / demo["cache"].glob("*.pt").__next__().name).write_bytes(b"not a torch file")
    proc = run_lumos("demo", "--out", str(demo["root"] / "out4"), cache=cache, cwd=demo["root"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "unreadable cache file" in proc.stdout
    assert "training the digits CNN" in proc.stdout
    state = torch.load(next(cache.glob("*.pt")), weights_only=True)
    assert state


def test_demo_training_leaves_the_global_rng_alone() -> None:
    from lumos.demo.digits import TrainingConfig, build_model, load_data, train

    config = TrainingConfig(epochs=1)
    assert config.key() != TrainingConfig().key()  # a configuration change retrains
    assert TrainingConfig(seed=1).key() != TrainingConfig().key()
    data = load_data(config)
    before = torch.get_rng_state()
    model = build_model(config.seed)
    train(model, data, config)
    assert torch.equal(torch.get_rng_state(), before)
