"""Unit: the hook manager (lumos.core.hooks) and operation overrides (lumos.core.op_override)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lumos.core.hooks import HookSet, count_hooks
from lumos.core.op_override import OperationOverride, relu_table


def test_hookset_removes_every_hook_even_when_the_body_raises() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    seen: list[str] = []
    with pytest.raises(ValueError, match="body"), HookSet() as hooks:
        hooks.forward(model[0], lambda m, a, o: seen.append("forward"))
        hooks.forward_pre(model[1], lambda m, a: seen.append("pre"))
        x = torch.ones(1, 2, requires_grad=True)
        hooks.tensor(x, lambda g: seen.append("tensor"))
        model(x).sum().backward()
        assert count_hooks(model) == 2
        raise ValueError("body")
    assert seen == ["forward", "pre", "tensor"]
    assert count_hooks(model) == 0
    model(x).sum().backward()  # nothing fires any more
    assert seen == ["forward", "pre", "tensor"]


def test_forward_hook_can_replace_the_output() -> None:
    layer = nn.Identity()
    with HookSet() as hooks:
        hooks.forward(layer, lambda m, a, o: o * 3)
        assert torch.equal(layer(torch.ones(2)), torch.full((2,), 3.0))
    assert torch.equal(layer(torch.ones(2)), torch.ones(2))


def test_count_hooks_sees_every_kind() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU()))
    handles = [
        model[0].register_forward_hook(lambda *a: None),
        model[1][0].register_forward_pre_hook(lambda *a: None),
        model.register_full_backward_hook(lambda *a: None),
        model[0].register_full_backward_pre_hook(lambda *a: None),
        model.register_forward_hook(lambda *a, **k: None, with_kwargs=True),
    ]
    assert count_hooks(model) == 5
    for handle in handles:
        handle.remove()
    assert count_hooks(model) == 0


def double(x: torch.Tensor) -> torch.Tensor:
    return x * 2


SPELLINGS = {
    "F.relu": lambda x: F.relu(x),
    "torch.relu": lambda x: torch.relu(x),
    "x.relu()": lambda x: x.relu(),
    "nn.ReLU()": lambda x: nn.ReLU()(x),
    "nn.ReLU(inplace=True)": lambda x: nn.ReLU(inplace=True)(x.clone()),
    "F.relu(inplace=True)": lambda x: F.relu(x.clone(), inplace=True),
    "F.relu(x, True)": lambda x: F.relu(x.clone(), True),
    "torch.relu_": lambda x: torch.relu_(x.clone()),
    "x.relu_()": lambda x: x.clone().relu_(),
}


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_relu_table_routes_every_spelling(spelling: str) -> None:
    x = torch.tensor([-1.0, 2.0])
    with OperationOverride(relu_table(double)):
        out = SPELLINGS[spelling](x)
    torch.testing.assert_close(out, torch.tensor([-2.0, 4.0]))
    torch.testing.assert_close(SPELLINGS[spelling](x), torch.tensor([0.0, 2.0]))  # off outside the block


def test_in_place_spelling_writes_into_its_argument() -> None:
    x = torch.tensor([-1.0, 2.0])
    with OperationOverride(relu_table(double)):
        F.relu(x, inplace=True)  # the return value is ignored
        y = torch.tensor([-3.0, 1.0])
        y.relu_()
    torch.testing.assert_close(x, torch.tensor([-2.0, 4.0]))
    torch.testing.assert_close(y, torch.tensor([-6.0, 2.0]))


def test_other_functions_pass_through() -> None:
    x = torch.tensor([-1.0, 2.0])
    with OperationOverride(relu_table(double)):
        torch.testing.assert_close(torch.sigmoid(x), torch.tensor([-1.0, 2.0]).sigmoid())
        torch.testing.assert_close(x.clamp(min=0), torch.tensor([0.0, 2.0]))


def test_backward_rules_rewrite_only_listed_nodes_and_are_removed_after() -> None:
    from lumos.core.backward_rules import BackwardRules

    calls: list[str] = []

    def double(grad_inputs, grad_outputs):  # noqa: ANN001, ANN202
        calls.append("relu")
        return tuple(None if g is None else 2 * g for g in grad_inputs)

    rules = BackwardRules({"ReluBackward0": double})
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = (F.relu(x) * 3 + torch.relu(x)).sum()
    (grad,) = rules.grad(y, (x,), retain_graph=True)
    torch.testing.assert_close(grad, torch.tensor([8.0, 0.0, 8.0]))  # (3 + 1) * 2 where x > 0
    assert calls == ["relu", "relu"]  # two ReLU nodes, each rewritten once
    (plain,) = torch.autograd.grad(y, (x,))  # same graph again: the hooks were removed
    torch.testing.assert_close(plain, torch.tensor([4.0, 0.0, 4.0]))
    assert calls == ["relu", "relu"]
    assert rules.attach(torch.ones(2)) == []  # no graph: nothing to hook
