"""AccEPT's bit-level compression of the activations and gradients that cross pipeline stages: per-tensor
b-bit min-max quantisation, round to nearest (error at most half a step), 8/b codes packed per byte.

``compress`` / ``decompress`` pick the fused Triton kernel for CUDA tensors and the torch reference
elsewhere; both produce the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..kernels import triton_runs_on

BITS = (2, 4, 8)


@dataclass(frozen=True)
class Compressed:
    payload: torch.Tensor  # uint8, ceil(numel * bits / 8) bytes; code j of a byte sits at bits [j*b, (j+1)*b)
    shape: tuple[int, ...]
    dtype: torch.dtype
    bits: int
    minimum: float
    step: float  # (max - min) / (2^bits - 1); 0 for a constant tensor

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def nbytes(self) -> int:
        """Payload size in bytes (the two floats of metadata are not counted)."""
        return int(self.payload.numel())


def _check_bits(bits: int) -> None:
    if bits not in BITS:
        raise ValueError(f"bits must be one of {BITS}, got {bits!r}")


def _range(tensor: torch.Tensor, bits: int) -> tuple[float, float]:
    lo, hi = torch.aminmax(tensor.detach().float())
    lo, hi = float(lo), float(hi)
    if not (torch.isfinite(torch.tensor([lo, hi])).all()):
        raise ValueError("cannot compress a tensor holding NaN or infinity")
    return lo, (hi - lo) / (2**bits - 1)


def compress(tensor: torch.Tensor, bits: int, backend: str = "auto") -> Compressed:
    """Quantise ``tensor`` to ``bits`` per value and pack. ``backend``: "auto", "triton" or "torch"."""
    _check_bits(bits)
    if tensor.numel() == 0:
        raise ValueError("cannot compress an empty tensor")
    lo, step = _range(tensor, bits)
    flat = tensor.detach().reshape(-1).float().contiguous()
    if _use_triton(backend, flat):
        from ..kernels._compression_triton import pack

        payload = pack(flat, bits, lo, step)
    else:
        payload = pack_reference(flat, bits, lo, step)
    return Compressed(payload, tuple(tensor.shape), tensor.dtype, bits, lo, step)


def decompress(c: Compressed, backend: str = "auto") -> torch.Tensor:
    if _use_triton(backend, c.payload):
        from ..kernels._compression_triton import unpack

        flat = unpack(c.payload, c.bits, c.minimum, c.step, c.numel)
    else:
        flat = unpack_reference(c.payload, c.bits, c.minimum, c.step, c.numel)
    return flat.reshape(c.shape).to(c.dtype)


def _use_triton(backend: str, tensor: torch.Tensor) -> bool:
    if backend not in ("auto", "triton", "torch"):
        raise ValueError(f"backend must be 'auto', 'triton' or 'torch', got {backend!r}")
    if backend == "triton":
        return True
    return backend == "auto" and tensor.is_cuda and triton_runs_on(tensor.device)


def pack_reference(flat: torch.Tensor, bits: int, minimum: float, step: float) -> torch.Tensor:
    """Torch reference: codes = round((x - min) / step), half up, packed low bits first within each byte."""
    per = 8 // bits
    levels = 2**bits - 1
    # floor(v + 0.5) with v scaled by the float32 reciprocal: the same arithmetic as the Triton kernel, so
    # both produce the same bytes (torch.round would round ties to even).
    inv_step = 0.0 if step == 0 else 1.0 / step
    codes = torch.floor((flat - minimum) * inv_step + 0.5).clamp_(0, levels).to(torch.uint8)
    pad = (-codes.numel()) % per
    if pad:
        codes = torch.cat([codes, codes.new_zeros(pad)])
    codes = codes.view(-1, per)
    shifts = torch.arange(0, 8, bits, dtype=torch.uint8, device=flat.device)
    return (codes << shifts).sum(dim=1, dtype=torch.uint8) if per > 1 else codes[:, 0].clone()


def unpack_reference(payload: torch.Tensor, bits: int, minimum: float, step: float, numel: int) -> torch.Tensor:
    shifts = torch.arange(0, 8, bits, dtype=torch.uint8, device=payload.device)
    codes = (payload[:, None] >> shifts) & (2**bits - 1)
    return codes.reshape(-1)[:numel].float() * step + minimum


class ErrorFeedback:
    """Error-feedback compression: the quantisation error of each call is added to the next tensor sent
    under the same key, so errors do not accumulate in the trained model."""

    def __init__(self, bits: int, backend: str = "auto"):
        _check_bits(bits)
        self.bits, self.backend = bits, backend
        self.residual: dict[str, torch.Tensor] = {}

    def compress(self, key: str, tensor: torch.Tensor) -> Compressed:
        corrected = tensor.detach().float() + self.residual.get(key, 0.0)
        c = compress(corrected, self.bits, self.backend)
        self.residual[key] = corrected - decompress(c, self.backend).float()
        return c
