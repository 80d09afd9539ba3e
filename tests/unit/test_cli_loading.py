"""Unit tests of the CLI's safe loaders and argument parsing (in-process, small files)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lumos.cli.arguments import parse_baseline, parse_params, parse_target
from lumos.cli.loading import CliArgumentError, load_data, load_model


def test_parse_params_reads_json_values_and_strings() -> None:
    assert parse_params(["n_steps=16", "layer=features.3", "relu=false", "window=[2, 2]", "x=0.5"]) == {
        "n_steps": 16, "layer": "features.3", "relu": False, "window": [2, 2], "x": 0.5}
    for bad in (["n_steps"], ["=3"], ["a b=1"], ["a=1", "a=2"]):
        with pytest.raises(CliArgumentError, match="--param"):
            parse_params(bad)


def test_parse_target() -> None:
    assert parse_target(None, 3) is None and parse_target("predicted", 3) is None
    assert parse_target("4", 3) == 4
    assert torch.equal(parse_target("1,0,2", 3), torch.tensor([1, 0, 2]))
    with pytest.raises(CliArgumentError, match="gave 2 classes for 3 samples"):
        parse_target("1,2", 3)
    with pytest.raises(CliArgumentError, match="--target"):
        parse_target("cat", 3)


def test_parse_baseline(tmp_path: Path) -> None:
    x = torch.arange(12.0).reshape(3, 4)
    assert parse_baseline(None, x) is None and parse_baseline("0.5", x) == 0.5
    torch.testing.assert_close(parse_baseline("mean", x), torch.tensor([[4.0, 5.0, 6.0, 7.0]]))
    np.save(tmp_path / "bg.npy", np.ones((2, 4), dtype=np.float32))
    torch.testing.assert_close(parse_baseline(str(tmp_path / "bg.npy"), x), torch.ones(2, 4))
    np.save(tmp_path / "bad.npy", np.ones((2, 5), dtype=np.float32))
    with pytest.raises(CliArgumentError, match="do not match"):
        parse_baseline(str(tmp_path / "bad.npy"), x)


def test_load_csv_with_header_and_without(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("age,income\n30,1.5\n40,2.5\n")
    data = load_data(tmp_path / "h.csv")
    assert data.feature_names == ["age", "income"]
    np.testing.assert_array_equal(data.inputs.numpy(), [[30, 1.5], [40, 2.5]])
    (tmp_path / "n.csv").write_text("1,2,3\n4,5,6\n")
    data = load_data(tmp_path / "n.csv")
    assert data.feature_names is None and data.inputs.shape == (2, 3)
    (tmp_path / "s.csv").write_text("a,b\n1,x\n")
    with pytest.raises(CliArgumentError, match="numeric"):
        load_data(tmp_path / "s.csv")


def test_load_npy_refuses_pickles_and_npz_needs_a_key(tmp_path: Path) -> None:
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CliArgumentError, match="plain numeric"):
        load_data(tmp_path / "obj.npy")
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 3)), b=np.ones((2, 3)))
    with pytest.raises(CliArgumentError, match="--key"):
        load_data(tmp_path / "two.npz")
    assert float(load_data(tmp_path / "two.npz", key="b").inputs.sum()) == 6.0


def test_load_images_scaled_and_normalised(tmp_path: Path) -> None:
    from skimage import io

    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    io.imsave(tmp_path / "a.png", rgb, check_contrast=False)
    io.imsave(tmp_path / "b.png", rgb // 5, check_contrast=False)
    data = load_data(tmp_path, mean=[0.5], std=[0.5])  # a directory: both images, sorted by name
    assert data.inputs.shape == (2, 3, 4, 5)
    np.testing.assert_allclose(data.inputs[0, 0].numpy(), 1.0)       # (1 - 0.5) / 0.5
    np.testing.assert_allclose(data.inputs[0, 1].numpy(), -1.0)      # (0 - 0.5) / 0.5
    np.testing.assert_allclose(data.inputs[1, 0].numpy(), (51 / 255 - 0.5) / 0.5, atol=1e-6)
    assert load_data(tmp_path / "a.png", size=(8, 8)).inputs.shape == (1, 3, 8, 8)


class Net(torch.nn.Module):
    def __init__(self, width: int = 3) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(2, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def test_state_dict_needs_the_class_and_loads_with_it(tmp_path: Path) -> None:
    net = Net(4)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    with pytest.raises(CliArgumentError, match="--class"):
        load_model(tmp_path / "w.pt")
    loaded = load_model(tmp_path / "w.pt", class_spec=f"{__name__}:Net", init_json='{"width": 4}')
    assert loaded.kind == "state dict" and not loaded.model.training
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loaded.model(x), net(x))
    with pytest.raises(CliArgumentError, match="does not fit"):
        load_model(tmp_path / "w.pt", class_spec=f"{__name__}:Net")
    with pytest.raises(CliArgumentError, match="not a torch.nn.Module"):
        load_model(tmp_path / "w.pt", class_spec="json:dumps")


def test_pickles_need_trust(tmp_path: Path) -> None:
    with open(tmp_path / "m.pkl", "wb") as handle:
        pickle.dump({"not": "a model"}, handle)
    with pytest.raises(CliArgumentError, match="--trust"):
        load_model(tmp_path / "m.pkl")
    assert load_model(tmp_path / "m.pkl", trust=True).model == {"not": "a model"}
    torch.save(Net(), tmp_path / "whole.pt")
    with pytest.raises(CliArgumentError, match="--trust"):
        load_model(tmp_path / "whole.pt")
    assert isinstance(load_model(tmp_path / "whole.pt", trust=True).model, Net)


def test_unknown_formats_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "m.h5").write_bytes(b"x")
    with pytest.raises(CliArgumentError, match="unknown model format"):
        load_model(tmp_path / "m.h5")
    with pytest.raises(CliArgumentError, match="no such file"):
        load_model(tmp_path / "nope.pt")
    with pytest.raises(CliArgumentError, match="unknown data format"):
        load_data(tmp_path / "m.h5")


def test_skops_untrusted_types_need_trust(tmp_path: Path) -> None:
    sio = pytest.importorskip("skops.io")
    from sklearn.linear_model import LogisticRegression

    x = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    model = LogisticRegression().fit(x, [0, 1, 1, 0])
    sio.dump(model, tmp_path / "m.skops")
    loaded = load_model(tmp_path / "m.skops")
    np.testing.assert_allclose(loaded.model.predict_proba(x), model.predict_proba(x))
