"""End-to-end tests of the ``lumos`` command: the real command in a subprocess, with a private cache dir."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import warnings
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
    ("explain",),
    ("explain", "m.pt", "x.npy"),
    ("evaluate", "m.pt", "x.npy", "--methods", ","),
    ("explain", "m.pt", "x.npy", "--method", "saliency", "--size", "0x3"),
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


def test_bad_out_dir_exits_2_with_one_line(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file.txt"
    not_a_dir.write_text("x")
    proc = run_lumos("demo", "--minimal", "--out", str(not_a_dir), cache=tmp_path / "cache")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("lumos demo: error: argument --out: ")
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
    proc = run_lumos("demo", "--minimal", "--out", str(out), cache=cache, cwd=root)
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
    proc = run_lumos("demo", "--minimal", "--out", str(out2), cache=demo["cache"], cwd=demo["root"])
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
    proc = run_lumos("demo", "--minimal", "--quiet", cache=demo["cache"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == str(Path("lumos-demo") / "heatmaps.png")
    for name in ("heatmaps.png", "summary.json", *(f"{m}.npz" for m in GRADIENT_METHODS)):
        assert (tmp_path / "lumos-demo" / name).exists(), name


@pytest.mark.slow
def test_demo_retrains_over_a_corrupt_cache(demo: dict) -> None:
    cache = demo["root"] / "corrupt-cache"
    cache.mkdir()
    (cache / demo["cache"].glob("*.pt").__next__().name).write_bytes(b"not a torch file")
    proc = run_lumos("demo", "--minimal", "--out", str(demo["root"] / "out4"), cache=cache, cwd=demo["root"])
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


# ------------------------------------------------------------------------------------------ explain / evaluate

NET_SOURCE = '''
import torch
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, channels: int = 4, classes: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))
'''


@pytest.fixture
def files(tmp_path: Path) -> dict:
    """A module with TinyNet on PYTHONPATH, its state dict, a TorchScript copy, a pickled copy and data."""
    (tmp_path / "tinynets.py").write_text(NET_SOURCE)
    sys.path.insert(0, str(tmp_path))
    try:
        import importlib

        module = importlib.import_module("tinynets")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = module.TinyNet(channels=5).eval()
        torch.save(net, tmp_path / "whole.pt")  # a pickle of the whole module (needs --trust)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("tinynets", None)
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.save(net.state_dict(), tmp_path / "state.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated; its format still loads
        torch.jit.script(net).save(str(tmp_path / "net.pt"))
    np.save(tmp_path / "x.npy", x.numpy())
    return {"dir": tmp_path, "net": net, "x": x}


def run_in(files: dict, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, LUMOS_PROGRESS="0", PYTHONPATH=str(files["dir"]) + os.pathsep
               + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "lumos", *args], capture_output=True, text=True, env=env,
                          cwd=files["dir"], timeout=300)


def test_explain_torchscript_equals_in_process(files: dict) -> None:
    proc = run_in(files, "explain", "net.pt", "x.npy", "--method", "integrated_gradients", "--param", "n_steps=8",
                  "--target", "2", "--baseline", "0", "--out", "ig.npz")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ig.npz")
    saved = lumos.load(files["dir"] / "ig.npz")
    expected = lumos.explain(files["net"], files["x"], method="integrated_gradients", target=2, baseline=0.0,
                             n_steps=8)
    torch.testing.assert_close(torch.as_tensor(saved.attributions), expected.attributions, rtol=1e-4, atol=1e-6)
    assert saved.params["n_steps"] == 8
    # completeness: the attributions sum to f(x) - f(0) for class 2 (up to the quadrature error)
    with torch.no_grad():
        gap = files["net"](files["x"])[:, 2] - files["net"](torch.zeros_like(files["x"]))[:, 2]
    total = torch.as_tensor(saved.attributions).reshape(4, -1).sum(1)
    torch.testing.assert_close(total, gap, rtol=2e-2, atol=1e-4)


def test_explain_state_dict_with_class(files: dict) -> None:
    proc = run_in(files, "explain", "state.pt", "x.npy", "--class", "tinynets:TinyNet", "--init-json",
                  '{"channels": 5}', "--method", "saliency", "--target", "0,1,2,0", "--out", "s.npz", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "s.npz"
    saved = lumos.load(files["dir"] / "s.npz")
    x = files["x"].clone().requires_grad_(True)
    out = files["net"](x)
    out[torch.arange(4), torch.tensor([0, 1, 2, 0])].sum().backward()
    torch.testing.assert_close(torch.as_tensor(saved.attributions), x.grad, rtol=1e-5, atol=1e-7)


def test_explain_csv_and_png_data(files: dict) -> None:
    from skimage import io

    image = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4)
    io.imsave(files["dir"] / "digit.png", image, check_contrast=False)
    proc = run_in(files, "explain", "net.pt", "digit.png", "--method", "saliency", "--out", "p.npz")
    assert proc.returncode == 0, proc.stderr
    saved = lumos.load(files["dir"] / "p.npz")
    np.testing.assert_allclose(np.asarray(saved.inputs)[0, 0], image / 255.0, rtol=0, atol=1e-6)


def test_explain_xgboost_json(tmp_path: Path) -> None:
    xgboost = pytest.importorskip("xgboost")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    y = x[:, 0] * 2 + (x[:, 1] > 0)
    booster = xgboost.train({"max_depth": 2, "eta": 0.3}, xgboost.DMatrix(x, label=y), num_boost_round=10)
    booster.save_model(str(tmp_path / "model.json"))
    (tmp_path / "x.csv").write_text("a,b,c\n" + "\n".join(",".join(f"{v:.6f}" for v in row) for row in x[:5]))
    proc = run_lumos("explain", "model.json", "x.csv", "--method", "tree_shap", "--target", "0", "--out", "t.npz",
                     cache=tmp_path, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    saved = lumos.load(tmp_path / "t.npz")
    assert saved.feature_names == ["a", "b", "c"]
    rows = np.loadtxt(tmp_path / "x.csv", delimiter=",", skiprows=1, dtype=np.float32)
    contribs = booster.predict(xgboost.DMatrix(rows), pred_contribs=True)[:, :3]
    np.testing.assert_allclose(np.asarray(saved.attributions), contribs, rtol=1e-4, atol=1e-4)


BAD_ARGUMENTS = [
    (("explain", "missing.pt", "x.npy", "--method", "saliency"), "MODEL: no such file"),
    (("explain", "net.pt", "missing.npy", "--method", "saliency"), "DATA: no such file"),
    (("explain", "net.pt", "x.npy", "--method", "nosuchmethod"), "--method: unknown method 'nosuchmethod'"),
    (("explain", "net.pt", "x.npy", "--method", "saliency", "--param", "n_steps"), "--param: expected NAME=VALUE"),
    (("explain", "whole.pt", "x.npy", "--method", "saliency"), "pass --trust"),
    (("explain", "state.pt", "x.npy", "--method", "saliency"), "--class: "),
    (("explain", "state.pt", "x.npy", "--method", "saliency", "--class", "tinynets"), "expected module:Class"),
    (("explain", "state.pt", "x.npy", "--method", "saliency", "--class", "tinynets:TinyNet"), "does not fit"),
    (("explain", "net.pt", "x.npy", "--method", "saliency", "--target", "1,2"), "--target: gave 2 classes"),
    (("explain", "net.pt", "x.npy", "--method", "saliency", "--out", "x.txt"), "--out: expected a file name"),
    (("report", "x.npy"), "RESULT: "),
]


@pytest.mark.parametrize(("args", "message"), BAD_ARGUMENTS)
def test_bad_arguments_exit_2_and_say_what(files: dict, args: tuple[str, ...], message: str) -> None:
    proc = run_in(files, *args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_trust_loads_a_pickled_module(files: dict) -> None:
    proc = run_in(files, "explain", "whole.pt", "x.npy", "--method", "saliency", "--trust", "--out", "w.npz")
    assert proc.returncode == 0, proc.stderr
    expected = lumos.explain(files["net"], files["x"], method="saliency")
    torch.testing.assert_close(torch.as_tensor(lumos.load(files["dir"] / "w.npz").attributions),
                               expected.attributions)


def test_method_error_exits_3(files: dict) -> None:
    proc = run_in(files, "explain", "net.pt", "x.npy", "--method", "saliency", "--target", "7")
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("lumos: error: ") and "Traceback" not in proc.stderr
    debug = run_in(files, "explain", "net.pt", "x.npy", "--method", "saliency", "--target", "7", "--debug")
    assert "Traceback" in debug.stderr


def test_evaluate_saves_an_evaluation(files: dict) -> None:
    proc = run_in(files, "evaluate", "net.pt", "x.npy", "--methods", "saliency,input_x_gradient", "--metrics",
                  "sparseness,complexity", "--out", "ev.npz")
    assert proc.returncode == 0, proc.stderr
    ev = lumos.load_evaluation(files["dir"] / "ev.npz")
    assert list(ev.methods) == ["saliency", "input_x_gradient"]
    grads = lumos.explain(files["net"], files["x"], method="saliency").attributions.reshape(4, -1).double().abs()
    p = grads / grads.sum(1, keepdim=True)
    entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(1)  # complexity: entropy of |a| / sum |a|
    np.testing.assert_allclose(ev.value("saliency", "complexity"), entropy.numpy(), rtol=1e-5)


def test_report_command(files: dict) -> None:
    pytest.importorskip("lumos.report")
    assert run_in(files, "explain", "net.pt", "x.npy", "--method", "saliency", "--out", "s.npz").returncode == 0
    proc = run_in(files, "report", "s.npz", "--out", "r.html")
    assert proc.returncode == 0, proc.stderr
    assert (files["dir"] / "r.html").read_text().lower().startswith("<!doctype html")


# ------------------------------------------------------------------------------------------ the real-data demo


@pytest.mark.slow
def test_real_demo_end_to_end(tmp_path: Path) -> None:
    from lumos.demo.real import missing_packages

    missing = missing_packages(("photos", "digits", "credit", "text"))
    if missing and os.environ.get("LUMOS_REQUIRE_DEMO") != "1":
        pytest.skip(f"the demo extra is not installed (missing {missing}); make demo installs it")
    start = time.perf_counter()
    proc = run_lumos("demo", "--out", str(tmp_path / "out"), cache=tmp_path, cwd=tmp_path, timeout=600)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert str(tmp_path / "out" / "report.html") in proc.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(summary["datasets"]) == {"photos", "digits", "credit", "text"}
    rows = {(r["dataset"], r["method"]): r for r in summary["rows"]}
    assert rows[("digits", "integrated_gradients")]["status"] == "ok"
    ig = lumos.load(rows[("digits", "deeplift")]["file"])
    assert float(np.abs(ig.extras["relative_convergence_delta"]).max()) < 1e-4  # DeepLIFT's summation-to-delta
    tree = lumos.load(rows[("credit", "tree_shap")]["file"])
    assert tree.attributions.shape == (5, 20)
    assert seconds < 240  # < 120 s on 2 idle cores; slack for a loaded CI machine
