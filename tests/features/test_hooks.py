"""Ending a forward at a layer: the layer's output comes back, later layers do not run, hooks are removed."""

from __future__ import annotations

import pytest
import torch

from vidprop.features.hooks import StopForward, layer_output, run_to_layer, run_until_stopped


class _Counting(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ran = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.ran += 1
        return x + 1


def test_run_to_layer_returns_the_layer_output_and_skips_the_rest():
    first, second = _Counting(), _Counting()
    model = torch.nn.Sequential(first, second)
    out = run_to_layer(first, lambda: model(torch.zeros(2)))
    assert torch.equal(out, torch.ones(2))
    assert (first.ran, second.ran) == (1, 0)
    assert not first._forward_hooks  # the hook is gone
    assert torch.equal(model(torch.zeros(2)), torch.full((2,), 2.0))


def test_run_to_layer_refuses_a_forward_that_never_reaches_the_layer():
    layer, other = _Counting(), _Counting()
    with pytest.raises(RuntimeError, match="never-run layer"):
        run_to_layer(layer, lambda: other(torch.zeros(1)), "never-run layer")
    assert not layer._forward_hooks


def test_run_until_stopped_ends_quietly_and_lets_other_errors_through():
    def stop() -> None:
        raise StopForward(3)

    run_until_stopped(stop)
    with pytest.raises(ValueError):
        run_until_stopped(lambda: int("x"))
    assert StopForward().output is None and StopForward(5).output == 5


def test_layer_output_takes_the_first_element_of_a_tuple_or_list():
    t = torch.ones(1)
    assert layer_output((t, 2)) is t and layer_output([t]) is t and layer_output(t) is t
