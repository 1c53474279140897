"""Fused single-thread CPU codec behind :mod:`replab.edge.compression`: ``_codec.c`` (range, quantise + pack,
unpack + dequantise, one pass each), compiled with the system C compiler and loaded through ctypes.

It gives the torch reference's bytes and values bit for bit (same float32 arithmetic, one rounding per
operation: built with ``-ffp-contract=off`` and without ``-ffast-math``). The shared library is built next to
its source, under a name keyed on the source, the flags and this CPU's features (``-march=native``), so an
edited source or another machine never loads a stale or foreign build; it is git-ignored.

    python -m replab.kernels.cpu_codec build     # what `make kernels` runs
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

SOURCE = Path(__file__).with_name("_codec.c")
FLAGS = ("-O3", "-ffp-contract=off", "-fno-fast-math", "-std=c11", "-fPIC", "-shared")
NATIVE = "-march=native"  # dropped, with a retry, where the compiler refuses it
ABI = 1  # CODEC_ABI in _codec.c
BITS = (2, 4, 8)


class CodecUnavailable(RuntimeError):
    """The C codec is not built for this source and machine, or cannot be built (no compiler)."""


def compiler() -> str | None:
    """The C compiler used: $CC if set, else ``cc``, else ``gcc``, from PATH; None when there is none."""
    for name in filter(None, (os.environ.get("CC"), "cc", "gcc")):
        path = shutil.which(name)
        if path:
            return path
    return None


def _cpu_features() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


@lru_cache(maxsize=1)
def library_path() -> Path:
    """Where the build for this source, these flags and this CPU lives (it may not exist yet)."""
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join((*FLAGS, NATIVE)).encode(), platform.machine().encode()):
        key.update(part)
        key.update(b"\0")
    key.update(_cpu_features().encode())
    return SOURCE.with_name(f"_codec-{key.hexdigest()[:16]}.so")


def build(force: bool = False) -> Path:
    """Compile ``_codec.c`` into :func:`library_path` (skipped when it exists, unless ``force``); returns it.

    Raises :class:`CodecUnavailable` when no C compiler is on PATH, RuntimeError when compiling fails."""
    target = library_path()
    if target.exists() and not force:
        return target
    cc = compiler()
    if cc is None:
        raise CodecUnavailable(
            "no C compiler on PATH (looked for $CC, cc, gcc): the CPU codec cannot be built, and "
            "replab.edge.compression uses the torch path on CPU. Install gcc, then run `make kernels`."
        )
    fd, tmp = tempfile.mkstemp(prefix=".codec-", suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        errors = []
        for flags in ((*FLAGS, NATIVE), FLAGS):
            proc = subprocess.run([cc, *flags, "-o", tmp, str(SOURCE)], capture_output=True, text=True)
            if proc.returncode == 0:
                break
            errors.append(f"$ {cc} {' '.join(flags)} -o ... {SOURCE.name}\n{proc.stderr.strip()}")
        else:
            raise RuntimeError("compiling the CPU codec failed:\n" + "\n".join(errors))
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)  # atomic: a concurrent reader sees the old file or the whole new one
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    for stale in target.parent.glob("_codec-*.so"):
        if stale != target:
            stale.unlink(missing_ok=True)
    return target


_lib: ctypes.CDLL | None = None


def library() -> ctypes.CDLL:
    """The loaded codec (loaded on first use). Raises :class:`CodecUnavailable` if it is not built."""
    global _lib
    if _lib is None:
        path = library_path()
        if not path.exists():
            raise CodecUnavailable(
                f"the CPU codec is not built for this source and machine ({path.name} is missing): "
                "run `make kernels` or `python -m replab.kernels.cpu_codec build`"
            )
        lib = ctypes.CDLL(str(path))
        if lib.replab_codec_abi() != ABI:
            raise CodecUnavailable(f"{path.name} has ABI {lib.replab_codec_abi()}, expected {ABI}: rebuild it")
        i64, f32, ptr = ctypes.c_int64, ctypes.c_float, ctypes.c_void_p
        lib.replab_codec_range.argtypes = [ptr, i64, ctypes.POINTER(f32), ctypes.POINTER(f32)]
        lib.replab_codec_pack.argtypes = [ptr, i64, ctypes.c_int, f32, f32, ptr]
        lib.replab_codec_unpack.argtypes = [ptr, i64, ctypes.c_int, f32, f32, ptr]
        for fn in (lib.replab_codec_range, lib.replab_codec_pack, lib.replab_codec_unpack):
            fn.restype = ctypes.c_int
        _lib = lib
    return _lib


def available() -> bool:
    """Whether the codec is built for this source and machine and loads."""
    try:
        library()
    except (CodecUnavailable, OSError):
        return False
    return True


def _check_floats(flat: torch.Tensor) -> None:
    import torch

    if flat.device.type != "cpu" or flat.dtype != torch.float32 or flat.dim() != 1 or not flat.is_contiguous():
        raise ValueError(
            f"expected a contiguous 1-D float32 CPU tensor, got {flat.dtype} {tuple(flat.shape)} on {flat.device}"
        )


def _check_bits(bits: int) -> None:
    if bits not in BITS:
        raise ValueError(f"bits must be one of {BITS}, got {bits!r}")


def value_range(flat: torch.Tensor) -> tuple[float, float, bool]:
    """(min, max, whether every value is finite) of a contiguous 1-D float32 CPU tensor, in one pass; min and
    max mean nothing when a value is not finite."""
    _check_floats(flat)
    if flat.numel() == 0:
        raise ValueError("the range of an empty tensor is undefined")
    lo, hi = ctypes.c_float(), ctypes.c_float()
    finite = library().replab_codec_range(flat.data_ptr(), flat.numel(), ctypes.byref(lo), ctypes.byref(hi))
    return lo.value, hi.value, bool(finite)


def pack(flat: torch.Tensor, bits: int, minimum: float, step: float) -> torch.Tensor:
    """Quantise + pack: ceil(numel * bits / 8) bytes, identical to ``compression.pack_reference``."""
    import torch

    _check_floats(flat)
    _check_bits(bits)
    out = torch.empty(-(-flat.numel() * bits // 8), dtype=torch.uint8)
    inv_step = 0.0 if step == 0 else 1.0 / step  # rounded to float32 by ctypes, as torch rounds the scalar
    library().replab_codec_pack(flat.data_ptr(), flat.numel(), bits, minimum, inv_step, out.data_ptr())
    return out


def unpack(payload: torch.Tensor, bits: int, minimum: float, step: float, numel: int) -> torch.Tensor:
    """Unpack + dequantise ``numel`` float32 values, identical to ``compression.unpack_reference``."""
    import torch

    _check_bits(bits)
    if payload.device.type != "cpu" or payload.dtype != torch.uint8 or not payload.is_contiguous():
        raise ValueError(f"expected a contiguous uint8 CPU payload, got {payload.dtype} on {payload.device}")
    if payload.numel() * 8 < numel * bits:
        raise ValueError(f"a payload of {payload.numel()} bytes holds fewer than {numel} {bits}-bit codes")
    out = torch.empty(numel, dtype=torch.float32)
    _ask_for_huge_pages(out)
    library().replab_codec_unpack(payload.data_ptr(), numel, bits, minimum, step, out.data_ptr())
    return out


# A fresh output this large is its own mmap (past glibc's largest mmap threshold), untouched: unpacking into it
# page-faults every 4 KiB, which costs about twice the unpacking itself. Advising huge pages first (Linux, where
# transparent huge pages are "madvise") faults it in 2 MiB at a time. Smaller outputs reuse heap memory already
# faulted in; advising them would only split the heap's mappings.
_HUGE_PAGE = 2 << 20
_ADVISE_FROM = 32 << 20
_MADV_HUGEPAGE = 14


@lru_cache(maxsize=1)
def _madvise():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def _ask_for_huge_pages(out: torch.Tensor) -> None:
    size = out.numel() * out.element_size()
    madvise = _madvise() if size >= _ADVISE_FROM else None
    if madvise is None:
        return
    start = -(-out.data_ptr() // _HUGE_PAGE) * _HUGE_PAGE
    end = (out.data_ptr() + size) // _HUGE_PAGE * _HUGE_PAGE
    if end > start:
        madvise(start, end - start, _MADV_HUGEPAGE)  # advice only: a refusal changes nothing


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m replab.kernels.cpu_codec", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="compile the codec (skipped when already built for this source and CPU)")
    b.add_argument("--force", action="store_true", help="recompile even if built")
    b.add_argument(
        "--optional",
        action="store_true",
        help="without a C compiler, say so and exit 0 (the torch path is used); compile errors still fail",
    )
    args = p.parse_args(argv)
    try:
        path = build(force=args.force)
    except CodecUnavailable as e:
        print(f"warning: {e}" if args.optional else f"error: {e}", file=sys.stderr)
        return 0 if args.optional else 1
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        shown = path.relative_to(Path.cwd())
    except ValueError:
        shown = path
    print(f"CPU codec: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
