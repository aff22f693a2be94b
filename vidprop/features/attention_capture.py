"""Capturing the U-Net's cross-attention to one token, for the optimised-prompt attention matching of
:mod:`vidprop.features.attention`.

:class:`CrossAttentionCapture` is an attention processor (installed with diffusers'
``unet.set_attn_processor``) that computes attention as diffusers' ``AttnProcessor`` and records the
head-averaged probability map of one token in an :class:`AttentionStore`; the store ends the U-Net forward
(:class:`~vidprop.features.hooks.StopForward`) once the last captured layer has run.
:func:`resolve_layers` names the ``attn2`` layers under the module prefixes a run captures.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import torch

from vidprop.errors import ConfigError
from vidprop.features.hooks import StopForward

__all__ = ["AttentionStore", "CrossAttentionCapture", "check_heads", "resolve_layers"]


class AttentionStore:
    """Collects one (B, N) map per captured layer during a U-Net forward."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self.maps: dict[str, torch.Tensor] = {}
        self.stop_early = True

    def reset(self) -> None:
        self.maps = {}

    def add(self, name: str, value: torch.Tensor) -> None:
        self.maps[name] = value
        if self.stop_early and len(self.maps) == len(self.names):
            raise StopForward  # every captured layer has run: end the U-Net forward


def check_heads(heads: Any) -> str:
    """``heads`` if it is one of the documented choices ("second_half", "all"); else one-line ConfigError.

    Only those two strings are accepted (a bool such as ``True``, or "second-half", is refused rather
    than silently averaging every head).
    """
    if not isinstance(heads, str) or heads not in ("second_half", "all"):
        raise ConfigError(f"attention.heads must be 'second_half' or 'all' (--heads second-half|all), got {heads!r}")
    return heads


class CrossAttentionCapture:
    """An attention processor that computes attention as diffusers' ``AttnProcessor``
    (explicit softmax(QK^T * scale)) and records the probability map of one
    token, averaged over heads (all, or the second half ``heads // 2 ..``), in an
    :class:`AttentionStore`."""

    def __init__(self, store: AttentionStore, name: str, token: int,
                 heads: Literal["second_half", "all"] = "second_half") -> None:
        self.store = store
        self.name = name
        self.token = token
        self.heads = check_heads(heads)

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args: Any, **kwargs: Any) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        )
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        query = attn.head_to_batch_dim(query)
        key = attn.head_to_batch_dim(key)
        value = attn.head_to_batch_dim(value)
        probs = attn.get_attention_scores(query, key, attention_mask)  # (B*heads, N, tokens)

        heads = attn.heads
        per_head = probs.view(-1, heads, probs.shape[1], probs.shape[2])[..., self.token]  # (B, heads, N)
        if self.heads == "second_half":
            per_head = per_head[:, heads // 2 :]  # as the authors' store keeps attn[h // 2:] (batch of one)
        self.store.add(self.name, per_head.float().mean(dim=1))  # may end the forward here

        hidden_states = torch.bmm(probs, value)
        hidden_states = attn.batch_to_head_dim(hidden_states)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def resolve_layers(unet: Any, prefixes: Sequence[str]) -> list[str]:
    """Processor names of the ``attn2`` layers under each module prefix (in U-Net order within a prefix)."""
    names = [n for n in unet.attn_processors if n.endswith(".attn2.processor")]
    out: list[str] = []
    for prefix in prefixes:
        found = [n for n in names if n.startswith(prefix.rstrip(".") + ".")]
        if not found:
            avail = sorted({n.split(".transformer_blocks")[0] for n in names})
            raise ConfigError(
                f"attention layer {prefix!r} has no cross-attention (attn2) in this U-Net; "
                f"modules with one: {', '.join(avail)}"
            )
        out.extend(n for n in found if n not in out)
    return out
