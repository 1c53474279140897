"""The Triton kernel behind :func:`replab.kernels.pac_aggregate.pac_target` (imported only when used)."""

import triton
import triton.language as tl


@triton.jit
def pac_aggregate_kernel(
    h_ptr,
    q_ptr,
    g_ptr,
    n_clusters,
    stride_h,
    stride_q,
    stride_g,
    batch: tl.constexpr,
    dim: tl.constexpr,
    cols_per_split: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    # Program (i, j) owns BLOCK_M rows and the j-th slice of the columns: it forms the cosine distances of
    # each BLOCK_M x BLOCK_N tile in registers (never the B x B matrix) and adds their product with q into
    # G. Slicing the columns gives the GPU enough programs at moderate batch sizes; slices meet by atomic add.
    # batch, dim and cols_per_split are compile-time constants: loop bounds from runtime scalars break Triton 3.5's CPU
    # interpreter under NumPy >= 2.4, and a training run uses one batch size and feature width anyway.
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    col_start = tl.program_id(1) * cols_per_split
    ks = tl.arange(0, BLOCK_K)
    g = tl.zeros((BLOCK_M, BLOCK_K), dtype=tl.float32)
    for offset in range(0, cols_per_split, BLOCK_N):
        cols = col_start + offset + tl.arange(0, BLOCK_N)
        sim = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for start_d in range(0, dim, BLOCK_D):
            ds = start_d + tl.arange(0, BLOCK_D)
            a = tl.load(
                h_ptr + rows[:, None] * stride_h + ds[None, :],
                mask=(rows[:, None] < batch) & (ds[None, :] < dim),
                other=0.0,
            )
            b = tl.load(
                h_ptr + cols[:, None] * stride_h + ds[None, :],
                mask=(cols[:, None] < batch) & (ds[None, :] < dim),
                other=0.0,
            )
            sim += tl.dot(a, tl.trans(b), input_precision=PRECISION)
        keep = (rows[:, None] != cols[None, :]) & (cols[None, :] < batch)
        dist = tl.where(keep, 1.0 - sim, 0.0)
        q = tl.load(
            q_ptr + cols[:, None] * stride_q + ks[None, :],
            mask=(cols[:, None] < batch) & (ks[None, :] < n_clusters),
            other=0.0,
        )
        g += tl.dot(dist, q, input_precision=PRECISION)
    mask = (rows[:, None] < batch) & (ks[None, :] < n_clusters)
    tl.atomic_add(g_ptr + rows[:, None] * stride_g + ks[None, :], g, mask=mask)
