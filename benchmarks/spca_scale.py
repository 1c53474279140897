"""Time and peak memory of SchrodingerPCA from 10^3 to 10^6 grid points, beside scikit-learn PCA (full and
randomized SVD) on sampled fields of the same size, all in this run on this machine.

Each (method, size) runs in its own process so its peak resident memory (ru_maxrss) is its own; memory is
reported above the process's baseline after imports. PCA is skipped where its sample matrix (and SVD
workspace) would exceed --pca-budget-gb. Targets (2-D, 10^6 points, top 10 modes): <= 60 s and <= 2 GB,
growth near linear.

    python benchmarks/spca_scale.py              # 2-D grids 10^3..10^6 plus a 3-D series
    python benchmarks/spca_scale.py --quick      # up to 10^5 points
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time

SIDES_2D = {1_000: 32, 10_000: 100, 100_000: 316, 1_000_000: 1000}
SIDES_3D = {1_000: 10, 10_000: 22, 100_000: 46, 1_000_000: 100}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(method: str, dims: int, side: int, n_components: int, n_samples: int) -> dict:
    import numpy as np

    from replab.spectral import SchrodingerPCA
    from replab.spectral.fields import FilteredNoiseField, paraboloid_variance

    shape = (side,) * dims
    variance = paraboloid_variance(shape, 0.4)
    if method == "spca":
        baseline = _rss_mb()
        start = time.perf_counter()
        model = SchrodingerPCA(n_components, correlation_length=2 * math.sqrt(2)).fit(variance)
        seconds = time.perf_counter() - start
        extra = {"solver": model.solver_}
    else:
        from sklearn.decomposition import PCA

        samples = FilteredNoiseField(variance, 2.0).sample(n_samples, 0).reshape(n_samples, -1).astype(np.float64)
        baseline = _rss_mb()
        start = time.perf_counter()
        PCA(n_components, svd_solver=method, random_state=0).fit(samples)
        seconds = time.perf_counter() - start
        extra = {"n_samples": n_samples}
    return {"seconds": seconds, "peak_mb": _rss_mb() - baseline, "rss_mb": _rss_mb(), **extra}


def run_one(method, dims, side, args) -> dict | None:
    cmd = [
        sys.executable,
        __file__,
        "--one",
        method,
        str(dims),
        str(side),
        "--components",
        str(args.components),
        "--samples",
        str(args.samples),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        print(f"  {method} {dims}-D side {side} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--one", nargs=3, metavar=("METHOD", "DIMS", "SIDE"), help=argparse.SUPPRESS)
    p.add_argument("--components", type=int, default=10)
    p.add_argument("--samples", type=int, default=1000, help="sampled fields for scikit-learn PCA")
    p.add_argument("--pca-budget-gb", type=float, default=6.0)
    p.add_argument("--quick", action="store_true", help="stop at 10^5 points")
    p.add_argument("--no-3d", action="store_true")
    p.add_argument("--timeout", type=float, default=900)
    args = p.parse_args()
    if args.one:
        method, dims, side = args.one
        print(json.dumps(measure(method, int(dims), int(side), args.components, args.samples)))
        return 0

    sizes = [n for n in SIDES_2D if not (args.quick and n > 100_000)]
    print(
        f"# Schrödinger PCA scaling — {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"top {args.components} modes, PCA on {args.samples} sampled fields\n"
    )
    print("| grid | points | method | time (s) | peak memory above baseline (MB) | note |")
    print("|---|---:|---|---:|---:|---|")
    series: dict[str, list[tuple[int, float]]] = {}
    peaks: dict[tuple[str, int, int], float] = {}
    plans = [(2, SIDES_2D, ["spca", "full", "randomized"])]
    if not args.no_3d:
        plans.append((3, SIDES_3D, ["spca"]))
    for dims, sides, methods in plans:
        for n in sizes:
            side = sides[n]
            points = side**dims
            for method in methods:
                label = {"spca": "SchrodingerPCA", "full": "sklearn PCA full", "randomized": "sklearn PCA randomized"}[
                    method
                ]
                if method != "spca" and args.samples * points * 8 * 3 / 1e9 > args.pca_budget_gb:
                    print(
                        f"| {side}^{dims} | {points:,} | {label} | — | — | does not fit: {args.samples} x {points:,} "
                        f"float64 samples need > {args.pca_budget_gb:g} GB with SVD workspace |"
                    )
                    continue
                res = run_one(method, dims, side, args)
                if res is None:
                    print(f"| {side}^{dims} | {points:,} | {label} | failed | | |")
                    continue
                note = f"solver {res['solver']}" if method == "spca" else ""
                print(
                    f"| {side}^{dims} | {points:,} | {label} | {res['seconds']:.2f} | {res['peak_mb']:.0f} | {note} |",
                    flush=True,
                )
                series.setdefault(f"{label} {dims}-D", []).append((points, res["seconds"]))
                peaks[(method, dims, n)] = res["peak_mb"]
    print()
    for name, pts in series.items():
        if len(pts) >= 2:
            (n0, t0), (n1, t1) = pts[0], pts[-1]
            slope = math.log(t1 / t0) / math.log(n1 / n0)
            print(f"- {name}: time grows as points^{slope:.2f} from {n0:,} to {n1:,} points")
    spca = dict(series.get("SchrodingerPCA 2-D", []))
    for baseline in ("sklearn PCA full 2-D", "sklearn PCA randomized 2-D"):
        common = sorted(set(spca) & set(dict(series.get(baseline, []))))
        if common:
            n = common[-1]
            ratio = dict(series[baseline])[n] / spca[n]
            print(f"- at {n:,} points SchrodingerPCA is {ratio:.1f}x faster than {baseline[:-4]} (same run)")
    if 1_000_000 in spca:
        seconds, mb = spca[1_000_000], peaks[("spca", 2, 1_000_000)]
        print(
            f"- target 10^6 points (2-D) in <= 60 s and <= 2 GB: {seconds:.1f} s, {mb:.0f} MB above baseline "
            f"-> {'met' if seconds <= 60 and mb <= 2048 else 'MISSED'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
