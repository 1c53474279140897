"""Online PAC target for a mini-batch, fused: cosine distances of the batch, G = D q, and the log-space
power normalisation ``q^_ik ∝ G_ik^(-1/(m-1))``, without materialising the B x B distance matrix."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import triton_runs_on

_TINY = 1e-30


def pac_target_reference(features: torch.Tensor, probs: torch.Tensor, m: float) -> torch.Tensor:
    """Torch reference: ``D = 1 - cos(h_i, h_j)`` with ``D_ii = 0``, ``G = D q``, ``softmax(-log G / (m-1))``."""
    h = F.normalize(features.float(), dim=1)
    d = 1.0 - h @ h.T
    d.fill_diagonal_(0.0)
    g = d @ probs.float()
    return torch.softmax(-torch.log(g.clamp_min(_TINY)) / (m - 1.0), dim=1)


def pac_target(features: torch.Tensor, probs: torch.Tensor, m: float, backend: str = "auto") -> torch.Tensor:
    """The target (no gradient). ``backend``: ``"auto"`` (Triton on CUDA, torch elsewhere), ``"triton"``, ``"torch"``."""
    if features.ndim != 2 or probs.ndim != 2 or features.shape[0] != probs.shape[0]:
        raise ValueError(f"features (B, d) and probs (B, K) must share B; got {tuple(features.shape)}, {tuple(probs.shape)}")
    if not m > 1:
        raise ValueError(f"m must be > 1, got {m}")
    if backend not in ("auto", "triton", "torch"):
        raise ValueError(f"backend must be 'auto', 'triton' or 'torch', got {backend!r}")
    with torch.no_grad():
        use_triton = backend == "triton" or (backend == "auto" and features.is_cuda and triton_runs_on(features.device))
        if use_triton:
            return _pac_target_triton(features, probs, m)
        return pac_target_reference(features, probs, m)


def _pac_target_triton(features: torch.Tensor, probs: torch.Tensor, m: float) -> torch.Tensor:
    import triton

    from ._pac_aggregate_triton import pac_target_kernel

    h = F.normalize(features.float(), dim=1).contiguous()
    q = probs.float().contiguous()
    batch, dim = h.shape
    k = q.shape[1]
    out = torch.empty((batch, k), dtype=torch.float32, device=h.device)
    block_m, block_n = 32, 32
    block_d = min(64, max(16, triton.next_power_of_2(dim)))
    block_k = max(16, triton.next_power_of_2(k))
    grid = (triton.cdiv(batch, block_m),)
    pac_target_kernel[grid](
        h, q, out, k, 1.0 / (m - 1.0), h.stride(0), q.stride(0), out.stride(0), batch=batch, dim=dim,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d, BLOCK_K=block_k,
    )  # fmt: skip
    return out
