"""Online PAC target for a mini-batch: cosine distances of the batch and G = D q fused in one Triton kernel
(the B x B distance matrix never exists), then the log-space power normalisation ``q^_ik ∝ G_ik^(-1/(m-1))``."""

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
    """The target (no gradient).

    ``backend``: ``"auto"`` (Triton on CUDA, torch elsewhere), ``"triton"``, ``"torch"``."""
    if features.ndim != 2 or probs.ndim != 2 or features.shape[0] != probs.shape[0]:
        raise ValueError(
            f"features (B, d) and probs (B, K) must share B; got {tuple(features.shape)}, {tuple(probs.shape)}"
        )
    if not m > 1:
        raise ValueError(f"m must be > 1, got {m}")
    if backend not in ("auto", "triton", "torch"):
        raise ValueError(f"backend must be 'auto', 'triton' or 'torch', got {backend!r}")
    with torch.no_grad():
        use_triton = backend == "triton" or (backend == "auto" and features.is_cuda and triton_runs_on(features.device))
        if use_triton:
            return _pac_target_triton(features, probs, m)
        return pac_target_reference(features, probs, m)


def _pac_target_triton(
    features: torch.Tensor,
    probs: torch.Tensor,
    m: float,
    block_m: int = 64,
    block_n: int = 64,
    num_warps: int = 4,
    splits: int | None = None,
    precision: str = "tf32x3",
) -> torch.Tensor:
    """``precision``: Triton's ``input_precision`` for the two tile products. ``tf32x3`` (default) runs on
    tensor cores with about fp32 accuracy; ``ieee`` is exact fp32 on the CUDA cores; ``tf32`` is fastest and
    loses about three decimal digits, which the exponent -1/(m-1) amplifies."""
    import triton

    from ._pac_aggregate_triton import pac_aggregate_kernel

    h = F.normalize(features.float(), dim=1).contiguous()
    q = probs.float().contiguous()
    batch, dim = h.shape
    k = q.shape[1]
    g = torch.zeros((batch, k), dtype=torch.float32, device=h.device)
    row_blocks = triton.cdiv(batch, block_m)
    col_blocks = triton.cdiv(batch, block_n)
    if splits is None:  # about 4 programs per multiprocessor; one slice (no atomics racing) when rows suffice
        sms = torch.cuda.get_device_properties(h.device).multi_processor_count if h.is_cuda else 1
        splits = max(1, min(col_blocks, (4 * sms) // row_blocks))
    cols_per_split = triton.cdiv(col_blocks, splits) * block_n
    splits = triton.cdiv(batch, cols_per_split)
    pac_aggregate_kernel[(row_blocks, splits)](
        h,
        q,
        g,
        k,
        h.stride(0),
        q.stride(0),
        g.stride(0),
        batch=batch,
        dim=dim,
        cols_per_split=cols_per_split,
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        BLOCK_D=min(64, max(16, triton.next_power_of_2(dim))),
        BLOCK_K=max(16, triton.next_power_of_2(k)),
        PRECISION=precision,
        num_warps=num_warps,
    )
    # The power normalisation is B x K element-wise work: torch's fused softmax does it in log space.
    return torch.softmax(-torch.log(g.clamp_min(_TINY)) / (m - 1.0), dim=1)
