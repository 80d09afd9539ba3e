"""Seeded random generators owned by one call: never the global RNG state.

Stochastic methods take ``seed``; ``None`` draws a fresh seed that is recorded in the Explanation, so
every result can be reproduced bit for bit on CPU.
"""

from __future__ import annotations

import secrets

import numpy as np
import torch

from ..errors import ValidationError


def resolve_seed(seed: int | None, *, owner: str) -> int:
    """Return ``seed`` checked, or a fresh random seed when it is ``None``."""
    if seed is None:
        return secrets.randbits(63)
    if isinstance(seed, (bool, float)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValidationError(f"{owner}: seed must be None or an int >= 0, got {seed!r}")
    return int(seed)


def derive_seed(seed: int, stream: int) -> int:
    """A seed for sub-stream ``stream`` of ``seed``, for nested random work (e.g. a stochastic method inside
    a noise tunnel): generators seeded alike draw from the same stream, so their numbers would be
    correlated. Mixed with numpy's ``SeedSequence``; deterministic, in [0, 2**63)."""
    state = np.random.SeedSequence([int(seed), int(stream)]).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(1))


def torch_generator(seed: int) -> torch.Generator:
    """A CPU torch generator seeded with ``seed``.

    Random numbers are drawn on the CPU and moved to the model's device, so CPU and CUDA runs with one
    seed draw the same numbers.
    """
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(seed))
    return generator


def numpy_generator(seed: int) -> np.random.Generator:
    """A numpy generator seeded with ``seed``."""
    return np.random.default_rng(int(seed))
