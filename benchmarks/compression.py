"""Pack + unpack throughput of AccEPT's b-bit compression as a fraction of a plain memory copy of the same
fp32 tensor, measured in the same run (target >= 50 % on the CPU torch path). On a CUDA machine it also times
the Triton kernels; the card is named in the output.

    python benchmarks/compression.py [--numel 3_100_000]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import torch

from replab.edge.compression import BITS, compress, decompress


def timed(fn, device: str, reps: int) -> float:
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--numel", type=int, default=3_100_000, help="values per tensor (3.1 M: a GPT-2 small activation batch)"
    )
    p.add_argument("--reps", type=int, default=10)
    args = p.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(
        f"# compression — {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{args.numel:,} fp32 values ({args.numel * 4 / 1e6:.1f} MB)\n"
    )
    print(
        "| device | backend | bits | ratio | pack (ms) | unpack (ms) | copy (ms) "
        "| pack+unpack GB/s | copy GB/s | fraction of copy |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for device in devices:
        name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
        x = torch.randn(args.numel, device=device)
        dst = torch.empty_like(x)
        t_copy = timed(lambda dst=dst, x=x: dst.copy_(x), device, args.reps)  # a plain copy into a touched buffer
        backends = ["torch"] + (["triton"] if device == "cuda" else [])
        for backend in backends:
            for bits in BITS:
                c = compress(x, bits, backend)
                t_pack = timed(lambda x=x, bits=bits, backend=backend: compress(x, bits, backend), device, args.reps)
                t_unpack = timed(lambda c=c, backend=backend: decompress(c, backend), device, args.reps)
                size = x.numel() * 4
                gbs = size / (t_pack + t_unpack) / 1e9
                copy_gbs = size / t_copy / 1e9
                print(
                    f"| {name} | {backend} | {bits} | {size / c.nbytes:.0f}x "
                    f"| {1e3 * t_pack:.2f} | {1e3 * t_unpack:.2f} | "
                    f"{1e3 * t_copy:.2f} | {gbs:.2f} | {copy_gbs:.2f} | {gbs / copy_gbs:.0%} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
