"""Small layer chains for pipeline experiments: a tiny transformer language model and an MLP, each a
plain list of modules so any contiguous range of them is a pipeline stage."""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    """Pre-norm transformer block (causal self-attention + MLP)."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, x):
        seq = x.shape[1]
        mask = torch.triu(torch.ones(seq, seq, dtype=torch.bool, device=x.device), 1)
        h = self.norm1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class Embed(nn.Module):
    def __init__(self, vocab: int, d_model: int, seq_len: int):
        super().__init__()
        self.tokens, self.positions = nn.Embedding(vocab, d_model), nn.Embedding(seq_len, d_model)

    def forward(self, ids):
        pos = torch.arange(ids.shape[1], device=ids.device)
        return self.tokens(ids) + self.positions(pos)[None]


class Head(nn.Module):
    def __init__(self, d_model: int, vocab: int):
        super().__init__()
        self.norm, self.out = nn.LayerNorm(d_model), nn.Linear(d_model, vocab)

    def forward(self, x):
        return self.out(self.norm(x))


def tiny_transformer(
    n_blocks: int = 4,
    d_model: int = 64,
    n_heads: int = 4,
    vocab: int = 64,
    seq_len: int = 32,
    seed: int = 0,
    only: range | None = None,
) -> list[nn.Module | None]:
    """Embedding, ``n_blocks`` transformer blocks, and the LM head, as a list. Each layer is initialised from
    its own seed (``seed`` and its index), so a pipeline rank can build ``only`` its stage's layers — the
    others are ``None`` and cost no memory — and still get the same weights as the whole model."""

    def make(i: int) -> nn.Module:
        if i == 0:
            return Embed(vocab, d_model, seq_len)
        return Head(d_model, vocab) if i == n_blocks + 1 else Block(d_model, n_heads)

    return layer_chain(n_blocks + 2, make, seed, only)


def layer_chain(n_layers: int, make, seed: int, only: range | None = None) -> list[nn.Module | None]:
    """``make(i)`` for each layer ``i`` in ``only`` (default all), each under its own seed (``seed`` and ``i``);
    ``None`` for the others."""
    wanted = range(n_layers) if only is None else only
    if wanted.start < 0 or wanted.stop > n_layers:
        raise ValueError(f"layers {wanted.start}..{wanted.stop - 1} outside 0..{n_layers - 1}")
    layers: list[nn.Module | None] = []
    for i in range(n_layers):
        if i in wanted:
            torch.manual_seed(seed * 1_000_003 + i)
            layers.append(make(i))
        else:
            layers.append(None)
    return layers


def boundary_shape(micro_batch: int, seq_len: int, d_model: int, **_) -> tuple[int, int, int]:
    """The tensor that crosses any cut of :func:`tiny_transformer` (every cut lies before the head)."""
    return (micro_batch, seq_len, d_model)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def chain_task(n_batches: int, batch: int, seq_len: int, vocab: int, seed: int = 0, noise: float = 0.1):
    """Next-token prediction on chains that follow a fixed random permutation of the vocabulary (a random
    token instead with probability ``noise``): learnable from the current token within tens of steps, so
    training losses fall well below chance (ln vocab) towards the noise floor."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(vocab, generator=g)
    out = []
    for _ in range(n_batches):
        seq = torch.empty(batch, seq_len + 1, dtype=torch.long)
        seq[:, 0] = torch.randint(0, vocab, (batch,), generator=g)
        for t in range(1, seq_len + 1):
            jump = torch.rand(batch, generator=g) < noise
            seq[:, t] = torch.where(jump, torch.randint(0, vocab, (batch,), generator=g), perm[seq[:, t - 1]])
        out.append((seq[:, :-1].contiguous(), seq[:, 1:].contiguous()))
    return out
