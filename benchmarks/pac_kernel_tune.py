"""Tile sizes of the online-PAC Triton kernel on the GPU at hand: time and error against the torch reference.

python benchmarks/pac_kernel_tune.py     # needs CUDA
"""

import itertools
import sys

import torch

from replab.kernels.pac_aggregate import _pac_target_triton, pac_target_reference


def bench(fn, reps=50):
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def main() -> int:
    if not torch.cuda.is_available():
        print("needs a CUDA GPU")
        return 1
    print(f"# {torch.cuda.get_device_name()}\n")
    print(
        "| batch | dim | K | BLOCK_M | BLOCK_N | warps | precision "
        "| Triton (ms) | torch (ms) | torch / Triton | max abs diff |"
    )
    print("|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for batch, dim, k in [(256, 128, 10), (1024, 512, 20), (4096, 512, 100)]:
        h = torch.randn(batch, dim, device="cuda")
        q = torch.softmax(torch.randn(batch, k, device="cuda"), 1)
        ref = pac_target_reference(h, q, 1.03)
        t_ref = bench(lambda h=h, q=q: pac_target_reference(h, q, 1.03))
        for (bm, bn), warps, prec in itertools.product(
            [(32, 64), (64, 64), (64, 128)], [4, 8], ["ieee", "tf32x3", "tf32"]
        ):
            try:
                out = _pac_target_triton(h, q, 1.03, bm, bn, warps, precision=prec)
                t = bench(
                    lambda h=h, q=q, bm=bm, bn=bn, warps=warps, prec=prec: _pac_target_triton(
                        h, q, 1.03, bm, bn, warps, precision=prec
                    )
                )
            except Exception as exc:  # a tile that does not fit shared memory
                print(
                    f"| {batch} | {dim} | {k} | {bm} | {bn} | {warps} | {prec} | failed: {type(exc).__name__} | | | |"
                )
                continue
            err = (out - ref).abs().max().item()
            print(
                f"| {batch} | {dim} | {k} | {bm} | {bn} | {warps} | {prec} "
                f"| {t:.3f} | {t_ref:.3f} | {t_ref / t:.2f}x | {err:.1e} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
