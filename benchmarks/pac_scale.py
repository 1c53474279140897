"""PAC at scale, with baselines measured in the same run on the same machine.

1. Time and peak memory of PAC for N = 1k ... 50k (d = 64, K = 10, cosine, m = 1.03), factored algorithm
   (default, O(N d K) a sweep) and blocked distances (O(N^2 (d + K)), up to --blocked-max), beside
   scikit-learn KMeans(n_init=10); each fit in its own process so its peak resident memory is its own.
2. Achieved GFLOP/s of the blocked algorithm's distance/aggregation block pass (2 N^2 (d + K) flops), as a
   fraction of torch.mm's GFLOP/s on products of the same total size and dtype, timed interleaved
   (target >= 50 %). The factored algorithm has no such blocks.
3. Online aggregation (batch target): Triton kernel vs torch reference on a GPU where there is one; the
   torch path on CPU.

    python benchmarks/pac_scale.py            # N up to 50,000 (several minutes on 2 cores)
    python benchmarks/pac_scale.py --quick    # N up to 10,000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

D, K = 64, 10


def data(n: int, seed: int = 0) -> np.ndarray:
    from sklearn.datasets import make_blobs

    x, _ = make_blobs(n, n_features=D, centers=K, cluster_std=4.0, random_state=seed)
    return x


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fit_one(method: str, n: int) -> dict:
    x = data(n)
    baseline = _rss_mb()
    start = time.perf_counter()
    if method.startswith("pac"):
        from replab.clustering import PAC

        model = PAC(K, random_state=0, algorithm=method.split("-")[1]).fit(x)
        extra = {"sweeps": int(model.n_iter_)}
    else:
        from sklearn.cluster import KMeans

        KMeans(K, n_init=10, random_state=0).fit(x)
        extra = {}
    return {"seconds": time.perf_counter() - start, "peak_mb": _rss_mb() - baseline, **extra}


def gflops(n: int, dtype: str, repeats: int = 3) -> dict:
    """Block-pass GFLOP/s of blocked PAC vs torch.mm of the same total size, interleaved in one process."""
    import torch

    from replab.clustering import PAC

    x = data(n)
    # A budget of 1024 rows per block, and below N x N, so the distances are streamed as in a large run.
    pac = PAC(
        K,
        random_state=0,
        dtype=dtype,
        algorithm="blocked",
        max_iter=1,
        min_iter=1,
        memory_budget_mb=1024 * n * np.dtype(dtype).itemsize / 2**20,
    )
    xn = pac._prepare(x)
    block = pac._block_rows(n)
    pm = np.full((n, K), 1.0 / K, dtype=dtype)
    flops_pass = 2.0 * n * n * (D + K)

    def block_pass():
        pac.block_pass(xn, None, block, pm)

    a = torch.randn(block, D + K, dtype=getattr(torch, dtype))
    b = torch.randn(D + K, n, dtype=getattr(torch, dtype))

    def mm():  # the same flop count as a block pass: n / block products of (block x (D+K)) @ ((D+K) x n)
        for _ in range(0, n, block):
            torch.mm(a, b)

    def best(fn):
        fn()
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    # Interleave the two so that both see the same machine load.
    t_mm, t_pass = [], []
    for _ in range(repeats):
        t_mm.append(best(mm))
        t_pass.append(best(block_pass))
    return {
        "block_rows": block,
        "torch_mm_gflops": flops_pass / min(t_mm) / 1e9,
        "pass_gflops": flops_pass / min(t_pass) / 1e9,
    }


def online(batch: int, dim: int, k: int) -> dict:
    import torch

    from replab.kernels.pac_aggregate import pac_target, pac_target_reference

    device = "cuda" if torch.cuda.is_available() else "cpu"
    h = torch.randn(batch, dim, device=device)
    q = torch.softmax(torch.randn(batch, k, device=device), 1)

    def timed(fn, reps=20):
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t) / reps

    out = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch_ms": 1e3 * timed(lambda: pac_target_reference(h, q, 1.03)),
    }
    if device == "cuda":
        out["triton_ms"] = 1e3 * timed(lambda: pac_target(h, q, 1.03, backend="triton"))
        out["max_abs_diff"] = float(
            (pac_target(h, q, 1.03, backend="triton") - pac_target_reference(h, q, 1.03)).abs().max()
        )
    return out


def child(args: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--child", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--online-only", action="store_true", help="only the online aggregation (for a GPU run)")
    p.add_argument("--blocked-max", type=int, default=20_000, help="largest N for the blocked algorithm's fit")
    args = p.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "fit":
            print(json.dumps(fit_one(rest[0], int(rest[1]))))
        elif kind == "gflops":
            print(json.dumps(gflops(int(rest[0]), rest[1])))
        return 0

    print(f"# PAC benchmark — {platform.machine()}, {os.cpu_count()} cores, d = {D}, K = {K}\n")
    if not args.online_only:
        sizes = [1_000, 5_000, 10_000] + ([] if args.quick else [20_000, 50_000])
        print(
            "| N | PAC factored (s) | sweeps | peak MB | PAC blocked (s) | peak MB | KMeans n_init=10 (s) | peak MB "
            "| factored / KMeans time |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n in sizes:
            fac, km = child(["fit", "pac-factored", str(n)]), child(["fit", "kmeans", str(n)])
            blk = child(["fit", "pac-blocked", str(n)]) if n <= args.blocked_max else None
            blk_text = f"{blk['seconds']:.2f} | {blk['peak_mb']:.0f}" if blk else "— | —"
            print(
                f"| {n:,} | {fac['seconds']:.2f} | {fac['sweeps']} | {fac['peak_mb']:.0f} | {blk_text} | "
                f"{km['seconds']:.2f} | {km['peak_mb']:.0f} | {fac['seconds'] / km['seconds']:.1f}x |",
                flush=True,
            )
        print("\n| N | dtype | block rows | torch.mm GFLOP/s | block pass GFLOP/s | pass / mm |")
        print("|---:|---|---:|---:|---:|---:|")
        for n in [5_000] if args.quick else [5_000, 20_000]:
            for dtype in ("float64", "float32"):
                g = child(["gflops", str(n), dtype])
                print(
                    f"| {n:,} | {dtype} | {g['block_rows']} | {g['torch_mm_gflops']:.1f} | {g['pass_gflops']:.1f} | "
                    f"{g['pass_gflops'] / g['torch_mm_gflops']:.0%} |",
                    flush=True,
                )
    print("\n| batch | dim | K | device | torch reference (ms) | Triton kernel (ms) | speed-up | max abs diff |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|")
    for batch, dim, k in [(256, 128, 10), (1024, 512, 20), (4096, 512, 100)]:
        r = online(batch, dim, k)
        tri = r.get("triton_ms")
        tri_text = "—" if tri is None else f"{tri:.3f}"
        speedup = "—" if tri is None else f"{r['torch_ms'] / tri:.2f}x"
        print(
            f"| {batch} | {dim} | {k} | {r['device']} | {r['torch_ms']:.3f} | {tri_text} | {speedup} | "
            f"{r.get('max_abs_diff', '—')} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
