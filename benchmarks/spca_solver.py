"""Schrödinger PCA's eigensolver against a plain scipy shift-invert, over a grid of cases, all in this run.

Arms, each (case, arm, repeat) in its own process so its peak resident memory is its own:
- naive: ``scipy.sparse.linalg.eigsh(H.tocsc(), k=10, sigma=-1.0, which="LM")``, exactly (sigma = -1 is the
  minimum of V = -S; SuperLU's default COLAMD ordering, ARPACK's default tolerance);
- naive shift, our factorisation: the same ARPACK call at sigma = -1, with our factorisation of ``H + I``
  (CHOLMOD, nested-dissection order) as ``OPinv``: the gain of the factorisation alone, apart from the strategy.
  It fails where ``H + I`` is not positive definite, i.e. where sigma = -1 lies inside the spectrum;
- ours: ``SchrodingerPCA(solver="shift-invert")`` (coarse-grid shift certified by a Cholesky factorisation,
  LOBPCG to a relative residual of 1e-6).
Repeats are interleaved (case by case, arm by arm within a repeat); times are medians with their range.
Eigenvalues are compared with a certified reference where it is affordable (--reference-max points): eigsh with
the shift below the proven spectrum bound, ARPACK at machine precision, certified by counting the eigenvalues below
the top one (Sylvester's law of inertia, ``replab.spectral.eigensolve.certify_lowest``); above that, with the
naive arm where it is valid, and where it is not (it missed the lowest states) with a tight reference: ours at
machine precision, certified the same way. Ours is also certified by that count in every case, off the clock, in
its first repeat.
Where ours returns a state (residual r) more than r below the naive arm's lowest eigenvalue, an eigenvalue exists
there (|E - theta| <= r for a unit vector), so the naive arm did not return the lowest states: it is flagged.

Cases: 2-D grids of 10^4, 10^5, 10^6 points and 3-D of 10^4, 10^5; correlation length fixed (2.83 px) or a
fraction of the side (1 %, 2 %, 5 %); a smooth (paraboloid) and a sharp-edged (disc) variance, both with a 0.05
floor. Targets (fixed in advance, from the issue): at 10^6 points every 2-D case >= 2x faster than the naive
arm and <= 2 GB (2e9 bytes of resident peak above the baseline); eigenvalues equal to 1e-6, relative to
max(1, |E|); every repeat run; ours certified lowest by the count.

    python benchmarks/spca_solver.py --dims 2 --out benchmarks/results/spca_solver_2d_cpu.md
    python benchmarks/spca_solver.py --dims 3 --repeats 1 --reference-max 20000 \\
        --out benchmarks/results/spca_solver_3d_cpu.md
    python benchmarks/spca_solver.py --max-points 100000 --repeats 1     # a quick look
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

K = 10
SIDES = {(2, 10_000): 100, (2, 100_000): 316, (2, 1_000_000): 1000, (3, 10_000): 22, (3, 100_000): 46}
LENGTHS = {"2.83 px": None, "1 %": 0.01, "2 %": 0.02, "5 %": 0.05}
PROFILES = ("smooth", "sharp")
ARMS = ("naive", "naive shift, our factorisation", "ours")
# 2 GB = 2e9 bytes of resident peak above the process's baseline after imports (tables show MiB).
TARGET_SPEEDUP, TARGET_BYTES, TARGET_REL = 2.0, 2e9, 1e-6


def correlation_length(side: int, fraction: float | None) -> float:
    return 2 * math.sqrt(2) if fraction is None else fraction * side


def variance(profile: str, shape):
    from replab.spectral.fields import disc_variance, paraboloid_variance

    if profile == "smooth":
        return paraboloid_variance(shape, 0.45) * 0.95 + 0.05
    return disc_variance(shape, 0.3, 0.05)


def measure(arm: str, dims: int, side: int, length_key: str, profile: str, certify: bool = False) -> dict:
    import scipy.sparse.linalg as sla

    from replab.spectral import SchrodingerPCA
    from replab.spectral.eigensolve import ShiftedCholesky, certify_lowest, nested_dissection
    from replab.spectral.operators import grid_laplacian, hamiltonian, spectrum_lower_bound

    shape = (side,) * dims
    var = variance(profile, shape)
    length = correlation_length(side, LENGTHS[length_key])
    c = length**2
    scaled = (var / var.max()).ravel()
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    extra: dict = {}
    if arm == "ours":
        model = SchrodingerPCA(K, correlation_length=length, solver="shift-invert").fit(var)
        energies = model.energies_
        shift = model.shift_
        scale = max(1.0, float(abs(energies).max()))
        extra = {"shift": shift.sigma, "certified_by": shift.certified_by, "residual": shift.residual * scale}
        vectors = model.components_.T
    elif arm == "naive":
        h = hamiltonian(scaled, grid_laplacian(shape), c)
        energies = sla.eigsh(h.tocsc(), k=K, sigma=-1.0, which="LM")[0]
    elif arm == "naive shift, our factorisation":
        h = hamiltonian(scaled, grid_laplacian(shape), c)
        solve = ShiftedCholesky(h, nested_dissection(shape)).at(-1.0)
        if solve is None:
            raise SystemExit("sigma = -1 lies inside the spectrum (H + I is not positive definite)")
        op = sla.LinearOperator(h.shape, matvec=solve, dtype=float)
        energies = sla.eigsh(h, k=K, sigma=-1.0, which="LM", OPinv=op)[0]
    elif arm == "tight reference":
        # Ours at machine precision (LOBPCG, else Lanczos), certified by a count: where SuperLU's solve is the
        # naive arm itself (and wrong) and an independent dense or ARPACK reference does not fit in time.
        model = SchrodingerPCA(K, correlation_length=length, solver="shift-invert", tol=0.0, certify=False).fit(var)
        energies, vectors = model.energies_, model.components_.T
        lap = grid_laplacian(shape)
        extra = certify_lowest(hamiltonian(scaled, lap, c), energies, vectors, nested_dissection(shape))
    elif arm == "reference":
        lap = grid_laplacian(shape)
        h = hamiltonian(scaled, lap, c)
        sigma = spectrum_lower_bound(scaled, lap, c) - 1e-3
        values, vectors = sla.eigsh(h.tocsc(), k=K, sigma=sigma, which="LM", tol=0)
        order = np.argsort(values)
        energies, vectors = values[order], vectors[:, order]
        extra = certify_lowest(h, energies, vectors, nested_dissection(shape))
    else:
        raise ValueError(arm)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - baseline
    if certify and arm == "ours":  # off the clock and after the memory reading
        h = hamiltonian(scaled, grid_laplacian(shape), c)
        extra["certificate"] = certify_lowest(h, energies, vectors, nested_dissection(shape))
    return {"seconds": seconds, "peak_mb": peak, "energies": sorted(float(e) for e in energies), **extra}


def run_one(arm, dims, side, length_key, profile, timeout, certify=False) -> dict:
    cmd = [sys.executable, __file__, "--one", arm, str(dims), str(side), length_key, profile]
    cmd += ["--certify"] if certify else []
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return {"error": "killed (out of memory?)" if proc.returncode < 0 else tail[0][:120]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def naive_missed(results, case) -> bool:
    """A state of ours more than its residual below the naive arm's lowest proves the naive arm missed it."""
    naive = [r for r in results[(*case, "naive")] if "error" not in r]
    ours = [r for r in results[(*case, "ours")] if "error" not in r]
    return bool(naive and ours and ours[0]["energies"][0] + ours[0]["residual"] < naive[0]["energies"][0])


def max_relative(a, b) -> float:
    """Largest difference relative to max(1, |E|) (the residual's scale; energies can cross zero)."""
    return max(abs(x - y) / max(abs(y), 1.0) for x, y in zip(a, b, strict=True))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--one", nargs=5, help=argparse.SUPPRESS)
    p.add_argument("--certify", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-points", type=int, default=1_000_000)
    p.add_argument("--dims", type=int, nargs="+", default=[2, 3], help="grid dimensions to run")
    p.add_argument("--reference-max", type=int, default=100_000, help="largest case given a certified reference")
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--out", help="also write the table here")
    args = p.parse_args()
    if args.one:
        arm, dims, side, length_key, profile = args.one
        print(json.dumps(measure(arm, int(dims), int(side), length_key, profile, args.certify)))
        return 0

    cases = [
        (dims, side, length_key, profile)
        for (dims, points), side in SIDES.items()
        if points <= args.max_points and dims in args.dims
        for length_key in LENGTHS
        for profile in PROFILES
    ]
    results: dict[tuple, list[dict]] = {}
    for repeat in range(args.repeats):
        for case in cases:
            for arm in ARMS if repeat % 2 == 0 else ARMS[::-1]:
                res = run_one(arm, *case, args.timeout, certify=repeat == 0)
                results.setdefault((*case, arm), []).append(res)
                status = res.get("error") or f"{res['seconds']:.1f} s"
                print(f"  repeat {repeat + 1}/{args.repeats} {case} {arm}: {status}", file=sys.stderr, flush=True)
    references = {}
    for case in cases:
        dims, side, *_ = case
        if side**dims <= args.reference_max:
            references[case] = run_one("reference", *case, args.timeout)
        elif naive_missed(results, case):
            references[case] = run_one("tight reference", *case, args.timeout)

    lines = [
        f"# Schrödinger PCA eigensolver — {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"top {K} states; {args.repeats} interleaved repeats, median (min–max)",
        "",
        "| grid | points | l | variance | arm | time (s) | peak MiB above baseline | vs naive "
        "| eigenvalues (residual: absolute) | shift |",
        "|---|---:|---|---|---|---:|---:|---:|---|---|",
    ]
    verdicts = []
    for case in cases:
        dims, side, length_key, profile = case
        points = side**dims
        naive_runs = [r for r in results[(*case, "naive")] if "error" not in r]
        naive_median = statistics.median(r["seconds"] for r in naive_runs) if naive_runs else None
        ours_runs = [r for r in results[(*case, "ours")] if "error" not in r]
        missed = naive_missed(results, case)
        reference = references.get(case)
        reference_ok = bool(reference and "error" not in reference and reference["certified"])
        for arm in ARMS:
            runs = results[(*case, arm)]
            ok = [r for r in runs if "error" not in r]
            row = f"| {side}^{dims} | {points:,} | {length_key} | {profile} | {arm} |"
            if not ok:
                lines.append(row + f" — | — | — | {runs[0]['error']} | |")
                if arm == "ours" and dims == 2 and points == 1_000_000:
                    verdicts.append(f"{side}^2 {length_key} {profile}: ours failed -> MISSED")
                continue
            times = [r["seconds"] for r in ok]
            median, peak = statistics.median(times), max(r["peak_mb"] for r in ok)
            speed = f"{naive_median / median:.2f}x" if naive_median else "—"
            if missed and arm != "naive" and naive_median:
                speed += " (naive wrong)"
            rel = None
            if arm == "naive" and missed:
                lowest, below = ok[0]["energies"][0], ours_runs[0]["energies"][0]
                check = f"NOT the lowest: a state at {below:.6g} lies below its {lowest:.6g}"
            elif reference_ok:
                rel = max_relative(ok[0]["energies"], reference["energies"])
                kind = "tight certified reference" if side**dims > args.reference_max else "certified reference"
                check = f"{rel:.1e} vs {kind}"
            elif arm == "naive" and missed:
                lowest, below = ok[0]["energies"][0], ours_runs[0]["energies"][0]
                check = f"NOT the lowest: a state at {below:.6g} lies below its {lowest:.6g}"
            elif arm != "naive" and naive_runs and not missed:
                rel = max_relative(ok[0]["energies"], naive_runs[0]["energies"])
                check = f"{rel:.1e} vs naive"
            else:
                check = "—"
            certificate = next((r["certificate"] for r in ok if "certificate" in r), None)
            if arm == "ours":
                check += f"; residual {ok[0]['residual']:.1e}"
                if certificate:
                    verdict = "certified" if certificate["certified"] else "NOT certified"
                    check += f"; count: {verdict} ({certificate['how']})"
            shift = f"{ok[0]['shift']:.4g} ({ok[0]['certified_by']})" if arm == "ours" else ""
            lines.append(
                row + f" {median:.2f} ({min(times):.2f}–{max(times):.2f}) | {peak:.0f} | {speed} | {check} | {shift} |"
            )
            if arm == "ours" and dims == 2 and points == 1_000_000:
                ratio = naive_median / median if naive_median else float("nan")
                # The eigenvalues must be checked: against a certified reference or the naive arm where it is valid,
                # and by ours' own count where no reference exists.
                counted = bool(certificate and certificate["certified"])
                # The eigenvalues must match a reference to 1e-6 (a certified one, or the naive arm where it is
                # valid) and ours must be certified lowest by its own count; every repeat must have run.
                eigen_ok = rel is not None and rel <= TARGET_REL and counted
                all_ran = len(ok) == len(runs)
                fits = peak * 2**20 <= TARGET_BYTES
                met = ratio >= TARGET_SPEEDUP and fits and eigen_ok and all_ran
                note = " (the naive arm's eigenvalues are not the lowest)" if missed else ""
                note += "" if counted else " (ours not certified by a count)"
                note += "" if rel is not None else " (no eigenvalue check)"
                note += "" if all_ran else f" ({len(runs) - len(ok)} repeats failed)"
                verdicts.append(
                    f"{side}^2 {length_key} {profile}: {ratio:.2f}x, {peak:.0f} MiB"
                    f"{'' if rel is None else f', eigenvalues {rel:.1e}'} -> {'met' if met else 'MISSED'}{note}"
                )
    uncertified = [c for c, r in references.items() if "error" in r or not r["certified"]]
    if uncertified:
        lines += ["", "References that could not be certified (no eigenvalue check against them):", ""]
        lines += [f"- {c}: {references[c]}" for c in uncertified]
    if verdicts:
        lines += [
            "",
            f"Targets at 10^6 points (>= {TARGET_SPEEDUP:g}x the naive arm's median, <= {TARGET_BYTES / 1e9:g} GB = "
            f"{TARGET_BYTES / 2**20:.0f} MiB resident peak above baseline, eigenvalues to {TARGET_REL:g} of a "
            "reference and certified lowest by a count):",
            "",
        ]
        lines += [f"- {v}" for v in verdicts]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
