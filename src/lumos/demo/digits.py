"""The demo's data and model: scikit-learn's 8x8 digits and a small CNN, trained once and cached.

The trained weights are cached as a plain ``state_dict`` (``torch.save``) in the cache directory
(``$LUMOS_CACHE_DIR``, else ``$XDG_CACHE_HOME/lumos``, else ``~/.cache/lumos``) under a file name keyed by a
hash of the training configuration and the architecture, so any change retrains. The cache is read only with
``torch.load(path, weights_only=True)``: no pickled code is ever run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

import lumos

#: bump when the training code changes in a way the configuration does not show
TRAINING_VERSION = 1


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that determines the trained weights (hashed into the cache file name)."""

    seed: int = 0
    test_size: float = 0.25
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4

    def key(self) -> str:
        text = json.dumps({"config": asdict(self), "architecture": repr(build_model(self.seed)),
                           "training_version": TRAINING_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class DigitsData:
    """Digits images scaled to [0, 1], shape (n, 1, 8, 8), with a stratified train/test split."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


@dataclass
class TrainedModel:
    model: nn.Module
    test_accuracy: float
    cached: bool
    cache_path: Path | None
    seconds: float
    notes: list[str] = field(default_factory=list)


def build_model(seed: int = 0) -> nn.Module:
    """conv(1->16, 3x3) - ReLU - conv(16->32, 3x3) - ReLU - maxpool(2) - linear(512 -> 10); logits out.

    Initialised from ``seed`` without touching the caller's global RNG state.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 10),
        )


def load_data(config: TrainingConfig) -> DigitsData:
    """scikit-learn's bundled digits (no download), pixel values 0..16 scaled to [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(images, labels, test_size=config.test_size,
                                              stratify=labels, random_state=config.seed)
    return DigitsData(torch.from_numpy(x_tr), torch.from_numpy(y_tr), torch.from_numpy(x_te),
                      torch.from_numpy(y_te))


def cache_dir() -> Path:
    """``$LUMOS_CACHE_DIR``, else ``$XDG_CACHE_HOME/lumos``, else ``~/.cache/lumos``."""
    env = os.environ.get("LUMOS_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "lumos"


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` intra-op threads, restoring the caller's setting afterwards.

    The demo's 8x8 model is far too small to gain from intra-op threads; on small or busy machines the
    thread synchronisation costs more than the work.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def train(model: nn.Module, data: DigitsData, config: TrainingConfig) -> None:
    """Adam on the cross-entropy with seeded batch order; the caller's global RNG state is left unchanged."""
    with torch.random.fork_rng(devices=[]), torch_threads(1):
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate,
                                     weight_decay=config.weight_decay)
        loss_fn = nn.CrossEntropyLoss()
        n = data.x_train.shape[0]
        model.train()
        for _ in range(config.epochs):
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, config.batch_size):
                rows = order[start:start + config.batch_size]
                optimizer.zero_grad()
                loss = loss_fn(model(data.x_train[rows]), data.y_train[rows])
                loss.backward()
                optimizer.step()
        model.eval()


def _load_cached(path: Path, model: nn.Module) -> str | None:
    """Load weights from ``path`` into ``model``; return why not, or ``None`` on success."""
    if not path.exists():
        return "no cached model"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:  # a corrupt or incompatible cache file: retrain and overwrite it
        return f"ignored the unreadable cache file {path} ({type(exc).__name__}: {exc})"
    return None


def _save(path: Path, model: nn.Module) -> str | None:
    """Write the state dict atomically; return a note when the cache cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        os.close(fd)
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, path)
    except OSError as exc:
        return f"could not cache the model in {path.parent} ({exc}); it will be trained again next time"
    return None


def trained_model(data: DigitsData, config: TrainingConfig, *, use_cache: bool = True,
                  log: Callable[[str], None] | None = None) -> TrainedModel:
    """The demo CNN: loaded from the cache when a model of this configuration is there, else trained."""
    start = time.perf_counter()
    model = build_model(config.seed)
    path = cache_dir() / f"digits-cnn-{config.key()}.pt"
    notes: list[str] = []
    cached = False
    if use_cache:
        reason = _load_cached(path, model)
        cached = reason is None
        if reason is not None and reason != "no cached model":
            notes.append(reason)
    if not cached:
        if log is not None:
            log("training the digits CNN (first run with this configuration; cached afterwards) ...")
        train(model, data, config)
        if use_cache:
            note = _save(path, model)
            if note:
                notes.append(note)
    model.eval()
    test_accuracy = accuracy(model, data.x_test, data.y_test)
    if test_accuracy < 0.9:
        raise lumos.LumosError(
            f"demo: the digits CNN reached only {test_accuracy:.1%} test accuracy; delete {path} and retry"
        )
    return TrainedModel(model, test_accuracy, cached, path if use_cache else None,
                        time.perf_counter() - start, notes)
