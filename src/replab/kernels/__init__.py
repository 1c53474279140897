"""Triton kernels, each beside its torch reference (tested on CPU with ``TRITON_INTERPRET=1``)."""

from __future__ import annotations

import os


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def triton_runs_on(device) -> bool:
    """Triton runs on CUDA tensors, or on CPU tensors under ``TRITON_INTERPRET=1`` (slow; for tests)."""
    if not triton_available():
        return False
    return getattr(device, "type", str(device)) == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"
