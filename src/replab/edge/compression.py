"""AccEPT's bit-level compression of the activations and gradients that cross pipeline stages: per-tensor
b-bit min-max quantisation, round to nearest (error at most half a step), 8/b codes packed per byte.

Backends, all giving the same bytes as the torch reference (``pack_reference`` / ``unpack_reference``):
"triton" (fused kernels, CUDA tensors), "c" (a fused single-thread C kernel for CPU tensors,
:mod:`replab.kernels.cpu_codec`, built by ``make kernels``) and "torch" (the eager reference). "auto" picks
Triton for CUDA tensors, the C kernel for CPU tensors when it is built, and torch otherwise (saying so once,
through logging, when the C kernel is missing).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from ..kernels import cpu_codec, triton_runs_on

BITS = (2, 4, 8)
BACKENDS = ("auto", "triton", "c", "torch")
log = logging.getLogger(__name__)
_warned_no_c = False


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


def _range(flat: torch.Tensor, bits: int, backend: str) -> tuple[float, float]:
    if backend == "c":
        lo, hi, finite = cpu_codec.value_range(flat)
    else:
        lo, hi = torch.aminmax(flat)
        lo, hi = float(lo), float(hi)
        finite = math.isfinite(lo) and math.isfinite(hi)  # aminmax propagates NaN
    if not finite:
        raise ValueError("cannot compress a tensor holding NaN or infinity")
    return lo, (hi - lo) / (2**bits - 1)


def compress(tensor: torch.Tensor, bits: int, backend: str = "auto") -> Compressed:
    """Quantise ``tensor`` to ``bits`` per value and pack. ``backend``: one of :data:`BACKENDS`."""
    _check_bits(bits)
    if tensor.numel() == 0:
        raise ValueError("cannot compress an empty tensor")
    flat = tensor.detach().reshape(-1).float().contiguous()
    used = resolve_backend(backend, flat)
    lo, step = _range(flat, bits, used)
    if used == "triton":
        from ..kernels._compression_triton import pack

        payload = pack(flat, bits, lo, step)
    elif used == "c":
        payload = cpu_codec.pack(flat, bits, lo, step)
    else:
        payload = pack_reference(flat, bits, lo, step)
    return Compressed(payload, tuple(tensor.shape), tensor.dtype, bits, lo, step)


def decompress(c: Compressed, backend: str = "auto") -> torch.Tensor:
    used = resolve_backend(backend, c.payload)
    if used == "triton":
        from ..kernels._compression_triton import unpack

        flat = unpack(c.payload, c.bits, c.minimum, c.step, c.numel)
    elif used == "c":
        flat = cpu_codec.unpack(c.payload.contiguous(), c.bits, c.minimum, c.step, c.numel)
    else:
        flat = unpack_reference(c.payload, c.bits, c.minimum, c.step, c.numel)
    return flat.reshape(c.shape).to(c.dtype)


def resolve_backend(backend: str, tensor: torch.Tensor) -> str:
    """The backend that ``backend`` means for ``tensor``: "triton", "c" or "torch".

    "auto": Triton for CUDA tensors (where Triton runs), the C kernel for CPU tensors where it is built, else
    torch. A forced "c" that is not built, or is given a CUDA tensor, raises RuntimeError."""
    global _warned_no_c
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend in ("triton", "torch"):
        return backend
    on_cpu = tensor.device.type == "cpu"
    if backend == "c":
        if not on_cpu:
            raise RuntimeError(f"backend 'c' runs on CPU tensors, got one on {tensor.device}")
        try:
            cpu_codec.library()
        except (cpu_codec.CodecUnavailable, OSError) as e:
            raise RuntimeError(f"backend 'c' is not available: {e}") from e
        return "c"
    if tensor.is_cuda and triton_runs_on(tensor.device):
        return "triton"
    if on_cpu:
        if cpu_codec.available():
            return "c"
        if not _warned_no_c:
            _warned_no_c = True
            log.warning(
                "the fused C compression kernel is not built (run `make kernels`); compressing CPU tensors with "
                "the slower torch path"
            )
    return "torch"


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
