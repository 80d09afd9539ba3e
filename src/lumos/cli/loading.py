"""Safe loading of the models and data the ``lumos`` command is given.

Models (never unpickled without ``trust=True``):

- TorchScript archives (``.pt``/``.pth``/``.ts``, ``torch.jit.load``: a restricted format, no pickled code);
- exported programs (``.pt2``, ``torch.export.load``);
- state dicts (``.pt``/``.pth`` read with ``torch.load(weights_only=True)``, or ``.safetensors``) plus a
  ``module:Class`` and optional constructor arguments (JSON);
- XGBoost boosters in their own JSON/UBJ format (``.json``/``.ubj``);
- scikit-learn models saved with skops (``.skops``; types outside skops' trusted set need ``trust=True``);
- pickles (``.pkl``/``.pickle``/``.joblib``, or a ``.pt`` holding a whole module) only with ``trust=True``.

Data: ``.npy`` (``allow_pickle=False``), ``.npz`` (one array, or ``key``), ``.csv`` (numeric columns; a header
gives the feature names), ``.parquet`` (pandas + pyarrow), image files (``.png``/``.jpg``/``.jpeg``/``.bmp``/
``.tif``/``.tiff``) or a directory of them: scaled to [0, 1], laid out (N, C, H, W), optionally normalised.
"""

from __future__ import annotations

import importlib
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")


class CliArgumentError(Exception):
    """A bad command-line argument or input file: exit code 2, message names the argument and the problem."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(f"{argument}: {message}")
        self.argument = argument


@dataclass
class LoadedModel:
    """A loaded model and how it was read. ``for_method(name)`` gives the object to explain with ``name``."""

    model: Any
    kind: str
    notes: list[str] = field(default_factory=list)
    tree_model: Any = None  # the booster itself, for TreeSHAP (``model`` wraps it for the other methods)

    def for_method(self, name: str) -> Any:
        return self.tree_model if (name == "tree_shap" and self.tree_model is not None) else self.model


@dataclass
class LoadedData:
    """Inputs (a float32 tensor, batch first), feature names (tabular) and the files they came from."""

    inputs: torch.Tensor
    feature_names: list[str] | None = None
    files: list[Path] = field(default_factory=list)


def _existing_file(path: str | Path, argument: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise CliArgumentError(argument, f"no such file: {path}")
    return path


def import_class(spec: str, argument: str = "--class") -> type:
    """``"package.module:Class"`` -> the class (the module is imported from ``sys.path`` / ``PYTHONPATH``)."""
    module_name, sep, qualname = spec.partition(":")
    if not sep or not module_name or not qualname:
        raise CliArgumentError(argument, f"expected module:Class (e.g. mypkg.models:Net), got {spec!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliArgumentError(argument, f"cannot import module {module_name!r} ({exc}); is it on PYTHONPATH?") from exc
    for part in qualname.split("."):
        if not hasattr(obj, part):
            raise CliArgumentError(argument, f"module {module_name!r} has no attribute {qualname!r}")
        obj = getattr(obj, part)
    if not isinstance(obj, type) or not issubclass(obj, torch.nn.Module):
        raise CliArgumentError(argument, f"{spec!r} is not a torch.nn.Module subclass")
    return obj


def _init_kwargs(init_json: str | None) -> dict[str, Any]:
    if init_json is None:
        return {}
    text = init_json
    if not init_json.lstrip().startswith("{") and Path(init_json).is_file():
        text = Path(init_json).read_text()
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliArgumentError("--init-json", f"not valid JSON ({exc.msg} at position {exc.pos})") from exc
    if not isinstance(kwargs, dict):
        raise CliArgumentError("--init-json", f"expected a JSON object of constructor arguments, got {text!r}")
    return kwargs


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/", 2)[1:2] == ["code"] for name in archive.namelist())


def _from_state_dict(state: Any, path: Path, class_spec: str | None, init_json: str | None) -> torch.nn.Module:
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CliArgumentError("MODEL", f"{path} holds {type(state).__name__}, not a state dict of tensors")
    if class_spec is None:
        raise CliArgumentError("--class", f"{path} is a state dict: give the architecture as --class module:Class "
                                          f"(and --init-json for its constructor arguments)")
    cls = import_class(class_spec)
    kwargs = _init_kwargs(init_json)
    try:
        model = cls(**kwargs)
    except TypeError as exc:
        raise CliArgumentError("--init-json", f"{class_spec}(**{kwargs}) failed: {exc}") from exc
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CliArgumentError("MODEL", f"the state dict in {path} does not fit {class_spec}: "
                                        f"{' '.join(line.strip() for line in first[:3])}") from exc
    return model


def _xgboost_model(path: Path) -> LoadedModel:
    try:
        import xgboost
    except ImportError as exc:
        raise CliArgumentError("MODEL", f"{path} looks like an XGBoost model, but xgboost is not installed") from exc
    booster = xgboost.Booster()
    try:
        booster.load_model(str(path))
    except xgboost.core.XGBoostError as exc:
        raise CliArgumentError("MODEL", f"{path} is not an XGBoost model file: {str(exc).splitlines()[0]}") from exc

    from lumos import NumpyModel

    def predict(x: np.ndarray) -> np.ndarray:
        data = xgboost.DMatrix(np.asarray(x, dtype=np.float32), feature_names=booster.feature_names)
        return booster.predict(data, output_margin=True)

    return LoadedModel(NumpyModel(predict), "xgboost booster", tree_model=booster,
                       notes=["explained output: the raw margin"])


def _skops_model(path: Path, trust: bool) -> LoadedModel:
    try:
        import skops.io as sio
    except ImportError as exc:
        raise CliArgumentError("MODEL", f"{path} is a skops file, but skops is not installed "
                                        f"(pip install skops)") from exc
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # a corrupt or foreign file
        raise CliArgumentError("MODEL", f"{path} is not a readable skops file: {exc}") from exc
    if untrusted and not trust:
        raise CliArgumentError("MODEL", f"{path} contains types outside skops' trusted set: {', '.join(untrusted)}; "
                                        f"pass --trust if you trust this file")
    return LoadedModel(sio.load(path, trusted=untrusted), "skops", notes=[f"trusted: {untrusted}"] if untrusted else [])


def _pickle_model(path: Path, trust: bool) -> LoadedModel:
    if not trust:
        raise CliArgumentError("MODEL", f"{path} is a pickle, which can run arbitrary code when loaded; "
                                        f"lumos loads it only with --trust")
    if path.suffix == ".joblib":
        import joblib

        return LoadedModel(joblib.load(path), "pickle (trusted)")
    import pickle

    with open(path, "rb") as handle:
        return LoadedModel(pickle.load(handle), "pickle (trusted)")  # noqa: S301 - only with --trust


def load_model(path: str | Path, *, class_spec: str | None = None, init_json: str | None = None,
               trust: bool = False, device: str | torch.device = "cpu") -> LoadedModel:
    """Load ``path`` as described in the module doc; raises :class:`CliArgumentError` saying what is wrong.

    Example::

        loaded = load_model("net.pt")                                   # TorchScript
        loaded = load_model("weights.pt", class_spec="mypkg.nets:Net")  # a state dict
    """
    path = _existing_file(path, "MODEL")
    suffix = path.suffix.lower()
    if path.is_dir():
        raise CliArgumentError("MODEL", f"{path} is a directory, not a model file")
    if suffix in (".json", ".ubj"):
        return _xgboost_model(path)
    if suffix == ".skops":
        return _skops_model(path, trust)
    if suffix in PICKLE_SUFFIXES:
        return _pickle_model(path, trust)
    if suffix == ".pt2":
        try:
            program = torch.export.load(str(path))
        except Exception as exc:
            raise CliArgumentError("MODEL", f"{path} is not a torch.export program: {exc}") from exc
        return LoadedModel(program.module(), "exported program")
    if suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise CliArgumentError("MODEL", f"{path} needs the safetensors package (pip install safetensors)") from exc
        return LoadedModel(_from_state_dict(load_file(str(path), device=str(device)), path, class_spec, init_json)
                           .eval(), "state dict (safetensors)")
    if suffix not in (".pt", ".pth", ".ts", ".bin"):
        raise CliArgumentError("MODEL", f"unknown model format {suffix or '(no suffix)'!r} of {path}; expected "
                                        ".pt/.pth (TorchScript or state dict), .pt2, .safetensors, .json/.ubj "
                                        "(XGBoost), .skops, or a pickle with --trust")
    if _is_torchscript(path) and class_spec is None:
        try:
            return LoadedModel(torch.jit.load(str(path), map_location=device).eval(), "TorchScript")
        except RuntimeError as exc:
            raise CliArgumentError("MODEL", f"{path} is not a loadable TorchScript archive: {exc}") from exc
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        if not trust:
            raise CliArgumentError("MODEL", f"{path} is neither TorchScript nor a plain state dict (it needs full "
                                            f"unpickling, which can run arbitrary code); save a state dict or "
                                            f"TorchScript, or pass --trust if you trust this file") from exc
        # full unpickling only behind --trust (refused above otherwise): the user vouches for this file
        model = torch.load(path, map_location=device, weights_only=False)  # noqa: S614
        if not isinstance(model, torch.nn.Module):
            return LoadedModel(_from_state_dict(model, path, class_spec, init_json).eval(), "state dict (trusted)")
        return LoadedModel(model.eval(), "pickled module (trusted)")
    return LoadedModel(_from_state_dict(state, path, class_spec, init_json).eval(), "state dict")


# ------------------------------------------------------------------------------------------------ data


def _image(path: Path) -> np.ndarray:
    from skimage import io

    try:
        image = io.imread(str(path))
    except Exception as exc:
        raise CliArgumentError("DATA", f"cannot read the image {path}: {exc}") from exc
    image = np.asarray(image)
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.0
    elif image.dtype == np.uint16:
        image = image.astype(np.float32) / 65535.0
    else:
        image = image.astype(np.float32)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise CliArgumentError("DATA", f"{path}: expected a 2-D grey or colour image, got shape {image.shape}")
    if image.shape[2] == 4:  # drop alpha
        image = image[:, :, :3]
    return np.transpose(image, (2, 0, 1))


def _images(paths: Sequence[Path], size: tuple[int, int] | None) -> np.ndarray:
    images = [_image(p) for p in paths]
    if size is not None:
        from skimage.transform import resize

        images = [resize(im, (im.shape[0], *size), anti_aliasing=True, preserve_range=True).astype(np.float32)
                  for im in images]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise CliArgumentError("DATA", f"the images have different shapes {sorted(shapes)}; give --size HxW")
    return np.stack(images)


def _table(path: Path) -> tuple[np.ndarray, list[str] | None]:
    if path.suffix.lower() == ".parquet":
        try:
            import pandas as pd

            frame = pd.read_parquet(path)
        except ImportError as exc:
            raise CliArgumentError("DATA", f"reading {path} needs pandas and pyarrow") from exc
        except Exception as exc:
            raise CliArgumentError("DATA", f"cannot read the parquet file {path}: {exc}") from exc
        bad = [str(c) for c in frame.columns if not np.issubdtype(frame[c].dtype, np.number)]
        if bad:
            raise CliArgumentError("DATA", f"{path}: non-numeric column(s) {bad}; encode them first")
        return frame.to_numpy(dtype=np.float32), [str(c) for c in frame.columns]
    lines = path.read_text().splitlines()
    if not lines:
        raise CliArgumentError("DATA", f"{path} is empty")
    first = [cell.strip() for cell in lines[0].split(",")]

    def numeric(cell: str) -> bool:
        try:
            float(cell)
        except ValueError:
            return False
        return True

    header = None if all(numeric(c) for c in first) else first
    try:
        values = np.loadtxt(path, delimiter=",", skiprows=1 if header else 0, dtype=np.float32, ndmin=2)
    except ValueError as exc:
        raise CliArgumentError("DATA", f"{path}: every column must be numeric ({exc})") from exc
    if header is not None and values.shape[1] != len(header):
        raise CliArgumentError("DATA", f"{path}: the header has {len(header)} names but rows have {values.shape[1]} "
                                       f"values")
    return values, header


def load_data(path: str | Path, *, key: str | None = None, size: tuple[int, int] | None = None,
              mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> LoadedData:
    """Load ``path`` as described in the module doc; raises :class:`CliArgumentError` saying what is wrong.

    Example::

        data = load_data("x.npy"); data.inputs.shape      # (N, ...)
        data = load_data("photos/", size=(224, 224), mean=[0.5] * 3, std=[0.5] * 3)
    """
    path = _existing_file(path, "DATA")
    suffix = path.suffix.lower()
    names: list[str] | None = None
    files = [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise CliArgumentError("DATA", f"the directory {path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        array = _images(files, size)
    elif suffix in IMAGE_SUFFIXES:
        array = _images(files, size)
    elif suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise CliArgumentError("DATA", f"{path} is not a plain numeric .npy array ({exc})") from exc
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.files)
            if key is None and len(keys) != 1:
                raise CliArgumentError("--key", f"{path} holds arrays {keys}; choose one with --key")
            key = key if key is not None else keys[0]
            if key not in keys:
                raise CliArgumentError("--key", f"{path} has no array {key!r}; it holds {keys}")
            array = archive[key]
    elif suffix in (".csv", ".parquet"):
        array, names = _table(path)
    else:
        raise CliArgumentError("DATA", f"unknown data format {suffix or '(no suffix)'!r} of {path}; expected .npy, "
                                       f".npz, .csv, .parquet, image files or a directory of images")
    if not np.issubdtype(np.asarray(array).dtype, np.number) and np.asarray(array).dtype != np.bool_:
        raise CliArgumentError("DATA", f"{path}: expected numbers, got dtype {np.asarray(array).dtype}")
    tensor = torch.as_tensor(np.asarray(array, dtype=np.float32))
    if tensor.ndim < 2:
        raise CliArgumentError("DATA", f"{path}: expected a batch (samples first, >= 2 dimensions), got shape "
                                       f"{tuple(tensor.shape)}")
    if mean is not None or std is not None:
        if tensor.ndim != 4:
            raise CliArgumentError("--mean/--std", "normalisation applies to images (N, C, H, W), got shape "
                                                   f"{tuple(tensor.shape)}")
        channels = tensor.shape[1]
        m = torch.tensor(list(mean) if mean is not None else [0.0] * channels, dtype=torch.float32)
        s = torch.tensor(list(std) if std is not None else [1.0] * channels, dtype=torch.float32)
        if m.numel() not in (1, channels) or s.numel() not in (1, channels) or bool((s <= 0).any()):
            raise CliArgumentError("--mean/--std", f"expected 1 or {channels} values (std > 0), got mean={mean} "
                                                   f"std={std}")
        tensor = (tensor - m.view(1, -1, 1, 1)) / s.view(1, -1, 1, 1)
    return LoadedData(tensor, names, files)
