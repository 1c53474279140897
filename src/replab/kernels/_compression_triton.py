"""Triton kernels behind :mod:`replab.edge.compression` (imported only when used): quantise + pack and
unpack + dequantise in one pass each."""

import torch
import triton
import triton.language as tl

BLOCK_BYTES = 1024


@triton.jit
def _pack_kernel(
    x_ptr, out_ptr, numel, n_bytes, minimum, inv_step, BITS: tl.constexpr, PER: tl.constexpr, BLOCK: tl.constexpr
):
    # Each program writes BLOCK bytes; byte i holds the codes of values i*PER .. i*PER + PER - 1.
    byte = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    j = tl.arange(0, PER)
    idx = byte[:, None] * PER + j[None, :]
    x = tl.load(x_ptr + idx, mask=idx < numel, other=minimum)
    codes = tl.floor((x - minimum) * inv_step + 0.5)
    codes = tl.minimum(tl.maximum(codes, 0.0), (1 << BITS) - 1).to(tl.int32)
    packed = tl.sum(codes << (j[None, :] * BITS), axis=1)
    tl.store(out_ptr + byte, packed.to(tl.uint8), mask=byte < n_bytes)


@triton.jit
def _unpack_kernel(
    p_ptr, out_ptr, numel, n_bytes, minimum, step, BITS: tl.constexpr, PER: tl.constexpr, BLOCK: tl.constexpr
):
    byte = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    j = tl.arange(0, PER)
    packed = tl.load(p_ptr + byte, mask=byte < n_bytes, other=0).to(tl.int32)
    codes = (packed[:, None] >> (j[None, :] * BITS)) & ((1 << BITS) - 1)
    idx = byte[:, None] * PER + j[None, :]
    tl.store(out_ptr + idx, codes.to(tl.float32) * step + minimum, mask=idx < numel)


def pack(flat: torch.Tensor, bits: int, minimum: float, step: float) -> torch.Tensor:
    per = 8 // bits
    n_bytes = -(-flat.numel() // per)
    out = torch.empty(n_bytes, dtype=torch.uint8, device=flat.device)
    inv_step = 0.0 if step == 0 else 1.0 / step
    _pack_kernel[(triton.cdiv(n_bytes, BLOCK_BYTES),)](
        flat, out, flat.numel(), n_bytes, minimum, inv_step, BITS=bits, PER=per, BLOCK=BLOCK_BYTES
    )
    return out


def unpack(payload: torch.Tensor, bits: int, minimum: float, step: float, numel: int) -> torch.Tensor:
    per = 8 // bits
    out = torch.empty(numel, dtype=torch.float32, device=payload.device)
    _unpack_kernel[(triton.cdiv(payload.numel(), BLOCK_BYTES),)](
        payload, out, numel, payload.numel(), minimum, step, BITS=bits, PER=per, BLOCK=BLOCK_BYTES
    )
    return out
