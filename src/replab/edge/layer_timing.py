"""Per-layer forward/backward timing, with torch and the standard library only, so that it runs on a device
that has nothing else installed (a Jetson with NVIDIA's wheel, a phone under Termux): ``replab target
profile`` ships this checkout and runs ``python -m replab.edge.layer_timing`` there. Records are plain dicts;
:mod:`replab.edge.profiles` validates them into a :class:`~replab.edge.profiles.DeviceProfile`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

# The layer chains a profile measures: pipeline layers (embedding, transformer blocks, head) of tiny
# transformers over a grid of widths, sequence lengths and batch sizes, so the predictor sees varied shapes.
PROFILE_GRID = [
    {"d_model": d, "seq_len": s, "batch": b} for d in (32, 48, 64, 96, 128) for s in (16, 32, 64) for b in (2, 4, 8, 16)
]
TINY_GRID = [{"d_model": 32, "seq_len": 16, "batch": b} for b in (4, 16)]  # tests: seconds, not a minute
GRIDS = {"full": PROFILE_GRID, "tiny": TINY_GRID}


def _features(x, y) -> tuple[int, int, int, int]:
    if not x.is_floating_point():  # token ids (batch, seq)
        return 1, int(y.shape[-1]), int(x.shape[1]) if x.ndim > 1 else 1, int(x.shape[0])
    seq = x.shape[1] if x.ndim == 3 else 1
    return int(x.shape[-1]), int(y.shape[-1]), int(seq), int(x.shape[0])


def time_layers(
    layers, example, repeats: int = 5, names: list[str] | None = None, min_seconds: float = 0.2
) -> list[dict]:
    """Forward and backward time of each module of ``layers`` (applied in sequence to ``example``): the mean
    over at least ``repeats`` calls and ``min_seconds`` of wall time, so that CPU-quota throttling (which
    short bursts escape) shows in the figure; FLOPs from torch's FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    records = []
    x = example
    for idx, layer in enumerate(layers):
        x = x.detach().requires_grad_(x.is_floating_point())
        with FlopCounterMode(display=False) as counter:
            y = layer(x)
        flops = float(counter.get_total_flops())
        grad = torch.ones_like(y)
        wrt = ([x] if x.requires_grad else []) + [p for p in layer.parameters() if p.requires_grad]

        def once(layer=layer, x=x, wrt=wrt, grad=grad):
            start = time.perf_counter()
            out = layer(x)
            mid = time.perf_counter()
            if out.requires_grad and wrt:
                torch.autograd.grad(out, wrt, grad, allow_unused=True)
            return mid - start, time.perf_counter() - mid

        once()  # warm caches and allocators
        fwd = bwd = 0.0
        calls, began = 0, time.perf_counter()
        while calls < repeats or time.perf_counter() - began < min_seconds:
            f, b = once()
            fwd, bwd, calls = fwd + f, bwd + b, calls + 1
        params = sum(p.numel() * p.element_size() for p in layer.parameters())
        nbytes = params + x.numel() * x.element_size() + y.numel() * y.element_size()
        fin, fout, seq, batch = _features(x, y)
        records.append(
            {
                "name": names[idx] if names else f"{idx}",
                "type": type(layer).__name__,
                "in_features": fin,
                "out_features": fout,
                "seq_len": seq,
                "batch": batch,
                "flops": flops,
                "bytes": float(nbytes),
                "forward_ms": 1e3 * fwd / calls,
                "backward_ms": 1e3 * bwd / calls,
            }
        )
        x = y.detach()
    return records


def matmul_gflops(size: int = 256, seconds: float = 0.5) -> float:
    """Sustained fp32 GFLOP/s of square matrix products here over ``seconds`` (long enough for a CPU quota's
    throttling to show): the device descriptor's speed figure."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        calls += 1
    return 2 * size**3 * calls / (time.perf_counter() - start) / 1e9


def transformer_layer_times(grid=None, repeats: int = 3, progress: bool = False) -> list[dict]:
    import torch

    from .models import tiny_transformer

    torch.manual_seed(0)
    records = []
    grid = grid or PROFILE_GRID
    for i, cfg in enumerate(grid):
        layers = tiny_transformer(n_blocks=1, d_model=cfg["d_model"], n_heads=4, vocab=64, seq_len=cfg["seq_len"])
        ids = torch.randint(0, 64, (cfg["batch"], cfg["seq_len"]))
        tag = f"d{cfg['d_model']}-s{cfg['seq_len']}-b{cfg['batch']}"
        records += time_layers(layers, ids, repeats, names=[f"{tag}/embed", f"{tag}/block", f"{tag}/head"])
        if progress and ((i + 1) % max(1, len(grid) // 10) == 0 or i + 1 == len(grid)):
            print(f"profiled {i + 1}/{len(grid)} layer configurations", flush=True)
    return records


def main(argv: list[str] | None = None) -> int:
    """``python -m replab.edge.layer_timing --out FILE``: this machine's layer times and matmul speed, as JSON."""
    import torch

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--grid", choices=sorted(GRIDS), default="full")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, all cores)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    began = time.perf_counter()
    layers = transformer_layer_times(GRIDS[a.grid], a.repeats, progress=True)
    result = {
        "layers": layers,
        "gflops": matmul_gflops(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "seconds": time.perf_counter() - began,
    }
    tmp = Path(a.out + ".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
