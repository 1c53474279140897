"""The Triton kernel behind :func:`replab.kernels.pac_aggregate.pac_target` (imported only when used)."""

import triton
import triton.language as tl


@triton.jit
def pac_target_kernel(
    h_ptr, q_ptr, out_ptr, n_clusters, inv_m1, stride_h, stride_q, stride_out,
    batch: tl.constexpr, dim: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    # batch and dim are compile-time constants: loop bounds from runtime scalars break Triton 3.5's CPU
    # interpreter under NumPy >= 2.4, and a training run uses one batch size and feature width anyway.
    # One program owns BLOCK_M rows: it streams the batch in BLOCK_N column tiles, forms the cosine
    # distances of the tile, and accumulates G = D q; then normalises G^(-1/(m-1)) in log space.
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    ks = tl.arange(0, BLOCK_K)
    g = tl.zeros((BLOCK_M, BLOCK_K), dtype=tl.float32)
    for start_n in range(0, batch, BLOCK_N):
        cols = start_n + tl.arange(0, BLOCK_N)
        sim = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for start_d in range(0, dim, BLOCK_D):
            ds = start_d + tl.arange(0, BLOCK_D)
            a = tl.load(h_ptr + rows[:, None] * stride_h + ds[None, :], mask=(rows[:, None] < batch) & (ds[None, :] < dim), other=0.0)
            b = tl.load(h_ptr + cols[:, None] * stride_h + ds[None, :], mask=(cols[:, None] < batch) & (ds[None, :] < dim), other=0.0)
            sim += tl.dot(a, tl.trans(b), input_precision="ieee")
        keep = (rows[:, None] != cols[None, :]) & (cols[None, :] < batch)
        dist = tl.where(keep, 1.0 - sim, 0.0)
        q = tl.load(q_ptr + cols[:, None] * stride_q + ks[None, :], mask=(cols[:, None] < batch) & (ks[None, :] < n_clusters), other=0.0)
        g += tl.dot(dist, q, input_precision="ieee")
    logits = -inv_m1 * tl.log(tl.maximum(g, 1e-30))
    logits = tl.where(ks[None, :] < n_clusters, logits, float("-inf"))
    shifted = logits - tl.max(logits, axis=1)[:, None]
    e = tl.exp(shifted)
    target = e / tl.sum(e, axis=1)[:, None]
    tl.store(out_ptr + rows[:, None] * stride_out + ks[None, :], target, mask=(rows[:, None] < batch) & (ks[None, :] < n_clusters))
