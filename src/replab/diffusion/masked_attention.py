"""Masked multi-identity cross-attention: in a scene of several people, the queries inside person i's region attend
only to identity i's condition tokens; queries outside every region attend only to the fallback tokens (the
identity-free context). A diffusers attention processor, installed with ``unet.set_attn_processor``; self-attention
(no ``encoder_hidden_states``) and calls without regions are ordinary attention.

The regions come through ``cross_attention_kwargs={"identity_regions": R, "token_groups": G}``: ``R`` (batch, H, W)
int, 0 outside every person and i inside person i, resized (nearest) to each layer's query grid; ``G`` (keys,) int,
the group of each condition token (0 the fallback, i identity i).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention


def region_bias(regions: torch.Tensor, token_groups: torch.Tensor, queries: int, dtype) -> torch.Tensor:
    """Additive attention bias (batch, queries, keys): 0 where a query's region equals the key's group, -inf
    elsewhere. The region map is resized to the square query grid of this layer."""
    side = math.isqrt(queries)
    if side * side != queries:
        raise ValueError(f"{queries} queries do not form a square grid")
    grid = F.interpolate(regions[:, None].float(), size=(side, side), mode="nearest")[:, 0].long()
    allowed = grid.view(len(regions), queries, 1) == token_groups.view(1, 1, -1)
    missing = ~allowed.any(dim=-1)
    if missing.any():
        raise ValueError("a query's region has no condition tokens (every region needs its group in token_groups)")
    bias = torch.zeros(allowed.shape, dtype=dtype, device=regions.device)
    return bias.masked_fill(~allowed, float("-inf"))


class MaskedIdentityAttnProcessor:
    """Cross-attention restricted by person regions (see the module docstring). ``keep_probs`` keeps the last
    cross-attention probabilities (batch x heads, queries, keys) in ``last_probs``, for tests and figures."""

    def __init__(self, keep_probs: bool = False):
        self.keep_probs = keep_probs
        self.last_probs: torch.Tensor | None = None

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        identity_regions: torch.Tensor | None = None,
        token_groups: torch.Tensor | None = None,
    ) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        cross = encoder_hidden_states is not None
        context = encoder_hidden_states if cross else hidden_states
        if cross and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        key, value = attn.to_k(context), attn.to_v(context)
        batch, queries, _ = hidden_states.shape
        bias = None
        if attention_mask is not None:
            bias = attn.prepare_attention_mask(attention_mask, key.shape[1], batch)
        if cross and identity_regions is not None:
            if token_groups is None or len(token_groups) != key.shape[1]:
                raise ValueError(f"token_groups must name the group of each of the {key.shape[1]} condition tokens")
            regions = region_bias(identity_regions, token_groups.to(identity_regions.device), queries, query.dtype)
            regions = regions.repeat_interleave(attn.heads, dim=0)
            bias = regions if bias is None else bias + regions
        query, key, value = (attn.head_to_batch_dim(t) for t in (query, key, value))
        probs = attn.get_attention_scores(query, key, bias)
        if cross and self.keep_probs:
            self.last_probs = probs.detach()
        hidden_states = attn.batch_to_head_dim(torch.bmm(probs, value))
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor
