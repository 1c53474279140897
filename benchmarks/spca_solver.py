"""Schrödinger PCA's eigensolver against a plain scipy shift-invert, over a grid of cases, all in this run.

Arms, each (case, arm, repeat) in its own process so its peak resident memory is its own:
- naive: ``scipy.sparse.linalg.eigsh(H.tocsc(), k=10, sigma=-1.0, which="LM")``, exactly (sigma = -1 is the
  minimum of V = -S; SuperLU's default COLAMD ordering, ARPACK's default tolerance);
- naive shift, our factorisation: the same ARPACK call at sigma = -1, with our factorisation of ``H + I``
  (CHOLMOD, nested-dissection order) as ``OPinv``: the gain of the factorisation alone, apart from the strategy.
  It fails where ``H + I`` is not positive definite, i.e. where sigma = -1 lies inside the spectrum;
- ours: ``SchrodingerPCA(solver="shift-invert")`` (coarse-grid shift certified by a Cholesky factorisation,
  LOBPCG to a relative residual of 1e-6);
- ours, count certificate on the clock: the same process then counts the eigenvalues below the top returned one
  (``certify_lowest``, exactly what ``SchrodingerPCA(certify=True)`` runs after its solve), so that the k lowest
  states are guaranteed, not only that none lies below the shift. The targets are judged on this row; the row
  above is its solve alone (time and peak read before the count).
Repeats are interleaved (case by case, arm by arm within a repeat); times are medians with their range.
Eigenvalues are compared with a certified reference where it is affordable (--reference-max points): eigsh with
the shift below the proven spectrum bound, ARPACK at machine precision, certified by counting the eigenvalues below
the top one (Sylvester's law of inertia, ``replab.spectral.eigensolve.certify_lowest``); above that, with the
naive arm where it is valid, and where it is not (it missed the lowest states) with a tight reference: ours at
machine precision, certified the same way. Each process's own baseline (resident after imports) is shown beside
the peak above it.
Where ours returns a state (residual r) more than r below the naive arm's lowest eigenvalue, an eigenvalue exists
there (|E - theta| <= r for a unit vector), so the naive arm did not return the lowest states: it is flagged.

Cases: 2-D grids of 10^4, 10^5, 10^6 points and 3-D of 10^4, 10^5; correlation length fixed (2.83 px) or a
fraction of the side (1 %, 2 %, 5 %); a smooth (paraboloid) and a sharp-edged (disc) variance, both with a 0.05
floor. Targets (from the issue; also pinned in ``replab.spectral.solver_benchmark``, which checks this file's
against them): at 10^6 points every 2-D case >= 2x faster than the naive arm and <= 2 GB (read as 2e9 bytes of
resident peak above the process's baseline); eigenvalues equal to 1e-6, relative to max(1, |E|), in every
repeat; every repeat run; ours certified lowest by the count in every repeat. Where the naive arm returned states
that are not the lowest, its time is no valid baseline and the case is not met.

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
CERTIFIED = "ours, count certificate on the clock"  # a row of its own, from the ours processes
# 2 GB = 2e9 bytes of resident peak above the process's baseline after imports (tables show MiB).
TARGET_SPEEDUP, TARGET_BYTES, TARGET_REL = 2.0, 2e9, 1e-6


def correlation_length(side: int, fraction: float | None) -> float:
    return 2 * math.sqrt(2) if fraction is None else fraction * side


def variance(profile: str, shape):
    from replab.spectral.fields import disc_variance, paraboloid_variance

    if profile == "smooth":
        return paraboloid_variance(shape, 0.45) * 0.95 + 0.05
    return disc_variance(shape, 0.3, 0.05)


def measure(arm: str, dims: int, side: int, length_key: str, profile: str) -> dict:
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
        extra["iteration"] = shift.iteration  # LOBPCG, or the Lanczos fallback
        # Then the count, on the clock: what ``SchrodingerPCA(certify=True)`` does after its solve (the same call;
        # the solve's factorisations are freed when it returns, in the fit too), timed and measured apart.
        solved_at, solved_peak = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        h = hamiltonian(scaled, grid_laplacian(shape), c)
        certificate = certify_lowest(h, energies, model.components_.T, nested_dissection(shape))
        del h
        extra["certified"] = {
            "seconds": time.perf_counter() - start,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - baseline,
            "certificate": certificate,
        }
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
    if arm == "ours":
        seconds, peak = solved_at - start, solved_peak - baseline
    else:
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - baseline
    return {
        "seconds": seconds,
        "peak_mb": peak,
        "baseline_mb": baseline,
        "energies": sorted(float(e) for e in energies),
        **extra,
    }


def run_one(arm, dims, side, length_key, profile, timeout) -> dict:
    cmd = [sys.executable, __file__, "--one", arm, str(dims), str(side), length_key, profile]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return {"error": "killed (out of memory?)" if proc.returncode < 0 else tail[0][:120]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def naive_missed(results, case) -> bool:
    """A state of ours more than its residual below the naive arm's lowest proves the naive arm missed it (any
    repeat of either)."""
    naive = [r for r in results[(*case, "naive")] if "error" not in r]
    ours = [r for r in results[(*case, "ours")] if "error" not in r]
    return any(o["energies"][0] + o["residual"] < n["energies"][0] for n in naive for o in ours)


def max_relative(a, b) -> float:
    """Largest difference relative to max(1, |E|) (the residual's scale; energies can cross zero)."""
    return max(abs(x - y) / max(abs(y), 1.0) for x, y in zip(a, b, strict=True))


def summarise(case, arm, runs, naive_median, missed, reference, reference_kind, ours_lowest=None) -> dict:
    """One (case, arm) row: medians, the worst peak, the eigenvalue check over every repeat, the certificate."""
    dims, side, length_key, profile = case
    row = {"dims": dims, "side": side, "points": side**dims, "length": length_key, "profile": profile, "arm": arm}
    ok = [r for r in runs if "error" not in r]
    row.update(repeats_run=len(ok), repeats=len(runs), naive_wrong=missed, error=None if ok else runs[0]["error"])
    if not ok:
        return {**row, "seconds": [], "speedup": None, "max_relative_error": None, "certified": False}
    times = [r["seconds"] for r in ok]
    median = statistics.median(times)
    row.update(
        seconds=times,
        median_s=median,
        peak_mib=max(r["peak_mb"] for r in ok),
        baseline_mib=statistics.median(r["baseline_mb"] for r in ok),
        speedup=naive_median / median if naive_median else None,
        speedups=[naive_median / t for t in times] if naive_median else [],
    )
    if arm == "naive" and missed:
        row["check"] = f"NOT the lowest: a state at {ours_lowest:.6g} lies below its {ok[0]['energies'][0]:.6g}"
        row["max_relative_error"] = None
    elif reference is not None and not (arm == "naive" and reference_kind == "naive"):
        row["max_relative_error"] = max(max_relative(r["energies"], reference) for r in ok)
        row["check"] = f"vs {reference_kind}"
    else:
        row["max_relative_error"], row["check"] = None, "—"
    if arm in ("ours", CERTIFIED):
        row.update(shift=ok[0]["shift"], certified_by=ok[0]["certified_by"], residual=max(r["residual"] for r in ok))
        row["iterations"] = sorted({r["iteration"] for r in ok})
    certificates = [r["certificate"] for r in ok if "certificate" in r]
    row["certified"] = (
        bool(certificates) and len(certificates) == len(runs) and all(c["certified"] for c in certificates)
    )
    if certificates:
        row["certificate"] = {
            "how": certificates[0]["how"],
            "max_error_norm": max(c.get("error_norm", float("nan")) for c in certificates),
            "min_margin": min(c["margin"] for c in certificates),
            "every_repeat": row["certified"],
            "lowest_k": all(c.get("lowest_k", False) for c in certificates),
        }
    return row


def render_row(row: dict) -> str:
    head = f"| {row['side']}^{row['dims']} | {row['points']:,} | {row['length']} | {row['profile']} | {row['arm']} |"
    if row["error"]:
        return head + f" — | — | — | — | {row['error']} | |"
    times = row["seconds"]
    speed = f"{row['speedup']:.2f}x" if row["speedup"] is not None else "—"
    if row["naive_wrong"] and row["arm"] != "naive" and row["speedup"] is not None:
        speed += " (naive wrong)"
    check = row["check"] if row["max_relative_error"] is None else f"{row['max_relative_error']:.1e} {row['check']}"
    if row["arm"] in ("ours", CERTIFIED):
        check += f"; residual {row['residual']:.1e}; by {'+'.join(row['iterations'])}"
    if row["arm"] == "ours":
        check += "; count in the next row"
    if "certificate" in row:
        verdict = "certified in every repeat" if row["certified"] else "NOT certified in every repeat"
        check += (
            f"; count: {verdict} ({row['certificate']['how']}; ||E|| <= {row['certificate']['max_error_norm']:.0e})"
        )
    shift = f"{row['shift']:.4g} ({row['certified_by']})" if "shift" in row else ""
    return (
        head + f" {row['median_s']:.2f} ({min(times):.2f}–{max(times):.2f}) | {row['peak_mib']:.0f} | "
        f"{row['baseline_mib']:.0f} | {speed} | {check} | {shift} |"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--one", nargs=5, help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-points", type=int, default=1_000_000)
    p.add_argument("--dims", type=int, nargs="+", default=[2, 3], help="grid dimensions to run")
    p.add_argument("--reference-max", type=int, default=100_000, help="largest case given a certified reference")
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--out", help="also write the table here")
    args = p.parse_args()
    from replab.spectral.solver_benchmark import TARGETS, case_verdict

    assert TARGETS == {"speedup": TARGET_SPEEDUP, "bytes": TARGET_BYTES, "relative": TARGET_REL, "judged_on": CERTIFIED}
    if args.one:
        arm, dims, side, length_key, profile = args.one
        print(json.dumps(measure(arm, int(dims), int(side), length_key, profile)))
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
                res = run_one(arm, *case, args.timeout)
                results.setdefault((*case, arm), []).append(res)
                if arm == "ours":  # the same process, after the count
                    certified = {**res, **res["certified"]} if "certified" in res else res
                    results.setdefault((*case, CERTIFIED), []).append(certified)
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
        "| grid | points | l | variance | arm | time (s) | peak MiB above baseline | baseline MiB | vs naive "
        "| eigenvalues (max over repeats; residual: absolute) | shift |",
        "|---|---:|---|---|---|---:|---:|---:|---:|---|---|",
    ]
    verdicts, rows, judged = [], [], []
    for case in cases:
        dims, side, length_key, profile = case
        naive_runs = [r for r in results[(*case, "naive")] if "error" not in r]
        naive_median = statistics.median(r["seconds"] for r in naive_runs) if naive_runs else None
        missed = naive_missed(results, case)
        reference, kind = references.get(case), None
        if reference and "error" not in reference and reference["certified"]:
            reference = reference["energies"]
            kind = "tight certified reference" if side**dims > args.reference_max else "certified reference"
        elif naive_runs and not missed and side**dims > args.reference_max:
            reference, kind = naive_runs[0]["energies"], "naive"
        else:
            reference = None
        by_arm = {}
        for arm in (*ARMS, CERTIFIED):
            ours = [r for r in results[(*case, "ours")] if "error" not in r]
            lowest = min((r["energies"][0] for r in ours), default=None)
            by_arm[arm] = summarise(case, arm, results[(*case, arm)], naive_median, missed, reference, kind, lowest)
            rows.append(by_arm[arm])
            lines.append(render_row(by_arm[arm]))
        if dims == 2 and side**dims == 1_000_000:
            row, solve = by_arm[CERTIFIED], by_arm["ours"]
            met, why = case_verdict(row, by_arm["naive"])  # the same verdict the notebook's claims recompute
            judged.append({**row, "met": met, "why": why})
            figures = "failed" if row["error"] else f"{row['speedup'] or float('nan'):.2f}x, {row['peak_mib']:.0f} MiB"
            if not row["error"] and row["max_relative_error"] is not None:
                figures += f", eigenvalues {row['max_relative_error']:.1e}"
            solve_figures = (
                ""
                if solve["error"]
                else (
                    f"; the solve alone (shift certified, no count): {solve['speedup'] or float('nan'):.2f}x, "
                    f"{solve['peak_mib']:.0f} MiB"
                )
            )
            verdicts.append(
                f"{side}^2 {length_key} {profile}: {figures} -> {'met' if met else 'MISSED'}"
                f"{'' if met else f' ({why})'}{solve_figures}"
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
            f"reference and certified lowest by a count), judged on '{CERTIFIED}':",
            "",
        ]
        lines += [f"- {v}" for v in verdicts]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
        # The same figures for the notebook and the metrics (replab.spectral.solver_benchmark reads them).
        from replab.measure import machine

        meta = {"machine": machine().model_dump(), "repeats": args.repeats, "k": K, "date": time.strftime("%Y-%m-%d")}
        targets = {"speedup": TARGET_SPEEDUP, "bytes": TARGET_BYTES, "relative": TARGET_REL, "judged_on": CERTIFIED}
        with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
            json.dump({**meta, "targets": targets, "rows": rows, "judged": judged}, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
