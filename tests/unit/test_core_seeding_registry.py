"""Unit: seeding (lumos.core.seeding) and the method registry (lumos.core.registry)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lumos
from lumos.core import registry
from lumos.core.seeding import numpy_generator, resolve_seed, torch_generator


def test_resolve_seed() -> None:
    assert resolve_seed(5, owner="T") == 5
    assert resolve_seed(np.int64(7), owner="T") == 7
    drawn = {resolve_seed(None, owner="T") for _ in range(5)}
    assert len(drawn) == 5 and all(0 <= s < 2**63 for s in drawn)
    for bad in (-1, 1.0, True, "3"):
        with pytest.raises(lumos.ValidationError, match=r"T: seed must be None or an int >= 0"):
            resolve_seed(bad, owner="T")


def test_generators_are_private_and_reproducible() -> None:
    state = torch.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    a = torch.randn(5, generator=torch_generator(3))
    b = torch.randn(5, generator=torch_generator(3))
    assert torch.equal(a, b) and not torch.equal(a, torch.randn(5, generator=torch_generator(4)))
    assert np.array_equal(numpy_generator(3).normal(size=4), numpy_generator(3).normal(size=4))
    assert torch.equal(torch.get_rng_state(), state)
    assert np.array_equal(np.random.get_state()[1], np_state)
    torch.manual_seed(123)  # the global seed has no influence on ours
    assert torch.equal(torch.randn(5, generator=torch_generator(3)), a)
    torch.set_rng_state(state)


def test_registry_lookup_and_errors() -> None:
    assert registry.get_method("saliency") is lumos.Saliency
    with pytest.raises(lumos.ValidationError, match=r"method must be one of: .*saliency.*; got 'salience'"):
        registry.get_method("salience")
    with pytest.raises(lumos.ValidationError):
        registry.get_method(lumos.Saliency)  # a class is not a name
    assert lumos.method_names() == sorted(lumos.method_names())


def test_register_refuses_nameless_and_duplicate_classes() -> None:
    class Nameless:
        name = ""

    with pytest.raises(TypeError, match="needs a class attribute `name`"):
        registry.register(Nameless)

    class Impostor(lumos.Explainer):
        name = "saliency"

    with pytest.raises(TypeError, match="registered twice"):
        registry.register(Impostor)
    assert registry.get_method("saliency") is lumos.Saliency
    assert registry.register(lumos.Saliency) is lumos.Saliency  # registering the same class again is fine
