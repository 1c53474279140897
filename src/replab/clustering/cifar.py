"""CIFAR-10 from a local copy, for the paper profile (nothing is downloaded).

Reads the binary distribution (``cifar-10-batches-bin``: a label byte and 3072 pixel bytes per record) with
numpy, which needs no unpickling; where only the python distribution is present and torchvision is
installed, torchvision's loader reads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

BIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
RECORD = 1 + 3 * 32 * 32


def find(root: str | Path) -> Path | None:
    """The folder holding CIFAR-10 under ``root``, or None."""
    root = Path(root).expanduser()
    for candidate in (root / "cifar-10-batches-bin", root):
        if all((candidate / f).exists() for f in BIN_FILES):
            return candidate
    if (root / "cifar-10-batches-py").exists():
        return root / "cifar-10-batches-py"
    return None


def load_cifar10(root: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Train and test images together (the paper clusters train + test): ``(uint8 (60000, 3, 32, 32), labels)``."""
    folder = find(root)
    if folder is None:
        raise FileNotFoundError(
            f"CIFAR-10 not found under {Path(root).expanduser()}: put the binary version (cifar-10-batches-bin) there"
        )
    if folder.name == "cifar-10-batches-py":
        try:
            from torchvision.datasets import CIFAR10
        except ImportError:
            raise FileNotFoundError(
                f"{folder} is the pickled python version, read only through torchvision (not installed); "
                "use the binary version (cifar-10-batches-bin) instead"
            ) from None
        parts = [CIFAR10(str(folder.parent), train=t, download=False) for t in (True, False)]
        images = np.concatenate([p.data for p in parts]).transpose(0, 3, 1, 2)
        return np.ascontiguousarray(images), np.concatenate([np.asarray(p.targets) for p in parts])
    records = np.concatenate([np.fromfile(folder / f, dtype=np.uint8).reshape(-1, RECORD) for f in BIN_FILES])
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), records[:, 0].astype(np.int64)
