"""Ending a model's forward pass at a layer: the features are an inner layer's output, so the layers after
it need not run.

A forward hook on the layer raises :class:`StopForward` (carrying what it captured); the caller catches it.
:func:`run_to_layer` does both for the common case of one layer whose output is wanted;
:func:`run_until_stopped` runs a forward whose own hooks may raise :class:`StopForward` (several layers, or
a stop that depends on the run).

    feats = run_to_layer(unet.up_blocks[1], lambda: unet(x_t, t, encoder_hidden_states=emb), "up-block 1")
"""

from __future__ import annotations

from typing import Any, Callable

import torch

__all__ = ["StopForward", "layer_output", "run_to_layer", "run_until_stopped"]


class StopForward(Exception):
    """Raised by a forward hook to end the forward early; ``output``: what the hook captured (or None)."""

    def __init__(self, output: Any = None) -> None:
        super().__init__()
        self.output = output


def layer_output(out: Any) -> Any:
    """A layer's output as a hook sees it, its first element when the layer returns a tuple or list."""
    return out[0] if isinstance(out, (tuple, list)) else out


def run_until_stopped(forward: Callable[[], Any]) -> None:
    """Call ``forward()``; a :class:`StopForward` raised by one of its hooks ends it quietly."""
    try:
        forward()
    except StopForward:
        pass


def run_to_layer(layer: torch.nn.Module, forward: Callable[[], Any], what: str = "the hooked layer") -> Any:
    """Call ``forward()`` until ``layer`` has run and return that layer's output (:func:`layer_output`).

    The hook is removed afterwards, whatever happens.  A forward that ends without running ``layer`` is a
    RuntimeError naming ``what``.
    """
    def hook(_module: Any, _inputs: Any, out: Any) -> None:
        raise StopForward(layer_output(out))

    handle = layer.register_forward_hook(hook)
    try:
        forward()
    except StopForward as stop:
        return stop.output
    finally:
        handle.remove()
    raise RuntimeError(f"the forward ended without reaching {what}")
