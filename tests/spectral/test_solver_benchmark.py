"""The committed eigensolver benchmark, read into claims: verdicts recomputed from its rows, not trusted."""

import json

import pytest

from replab.measure import machine
from replab.spectral import solver_benchmark as sb

CERTIFIED = sb.JUDGED_ARM
CASES = [(length, profile) for length in sb.LENGTHS for profile in sb.PROFILES]


def row(
    arm,
    speedup,
    length="1 %",
    profile="smooth",
    peak=1500.0,
    error=1e-12,
    certified=True,
    repeats_run=3,
    points=1_000_000,
    naive_wrong=False,
):
    seconds = [10.0, 11.0, 12.0][:repeats_run]
    return {
        "dims": 2,
        "side": 1000,
        "points": points,
        "length": length,
        "profile": profile,
        "arm": arm,
        "repeats": 3,
        "repeats_run": repeats_run,
        "error": None if repeats_run else "killed",
        "seconds": seconds,
        "speedups": [speedup * 11.0 / s for s in seconds],
        "median_s": 11.0,
        "peak_mib": peak,
        "baseline_mib": 180.0,
        "speedup": speedup,
        "naive_wrong": naive_wrong,
        "max_relative_error": error,
        "certified": certified,
        "certificate": {"how": "10 eigenvalues below the top + margin", "lowest_k": True},
    }


def every_case(**overrides):
    """Every case, judged arm (2.5x) and solve-only arm (3x); ``overrides`` apply to the first case's judged arm."""
    rows = []
    for n, (length, profile) in enumerate(CASES):
        fields = {"speedup": 2.5, **(overrides if n == 0 else {})}
        rows.append(row(CERTIFIED, length=length, profile=profile, **fields))
        rows.append(row("ours", 3.0, length, profile))
        rows.append(row("naive", 1.0, length, profile))
    return rows


def write(tmp_path, rows, targets=None, repeats=3):
    path = tmp_path / "bench.json"
    data = {"machine": machine().model_dump(), "repeats": repeats, "k": 10, "date": "2026-11-27"}
    data["targets"] = targets or sb.TARGETS
    path.write_text(json.dumps({**data, "rows": rows, "judged": []}))
    return sb.load(path)


def by_key(claims):
    return {c.key: c for c in claims}


def test_every_case_met_is_met(tmp_path):
    rows = every_case()
    rows[0]["speedup"], rows[0]["speedups"] = 2.1, [2.0, 2.1, 2.3]
    claims = by_key(sb.claims(write(tmp_path, rows)))
    assert claims["solver_cases_met_fraction"].verdict == "met"
    assert claims["solver_min_speedup"].ours == 2.1 and claims["solver_min_speedup"].spread.values == [2.0, 2.1, 2.3]
    assert claims["solver_min_speedup_solve_only"].ours == 3.0
    assert claims["solver_max_peak_mib"].verdict == "met"


@pytest.mark.parametrize(
    "bad",
    [
        {"speedup": 1.9},  # too slow
        {"peak": 1910.0},  # over 2e9 bytes (1907.3 MiB)
        {"error": 2e-6},  # eigenvalues off
        {"error": None},  # eigenvalues not checked
        {"certified": False},  # not certified lowest by the count in every repeat
        {"repeats_run": 2},  # a repeat failed
        {"repeats_run": 0},  # every repeat failed
        {"naive_wrong": True, "speedup": 3.0},  # fast, but against a baseline that returned the wrong states
    ],
)
def test_one_failing_target_misses_the_case(tmp_path, bad):
    claims = by_key(sb.claims(write(tmp_path, every_case(**bad))))
    assert claims["solver_cases_met_fraction"].ours == 7 / 8
    assert claims["solver_cases_met_fraction"].verdict == "missed"


def test_lowest_only_up_to_a_top_group_or_a_failed_naive_repeat_is_not_met(tmp_path):
    rows = every_case()
    rows[0]["certificate"] = {"how": "8 below the top group; the top level has more than 2 states"}  # no flag
    rows[5]["repeats_run"] = 2  # the second case's naive arm lost a repeat
    claims = by_key(sb.claims(write(tmp_path, rows)))
    assert claims["solver_cases_met_fraction"].ours == 6 / 8
    assert "exactly the k lowest" in claims["solver_cases_met_fraction"].note


def test_a_missing_case_is_missed_and_other_sizes_are_not_judged(tmp_path):
    rows = every_case()
    claims = by_key(sb.claims(write(tmp_path, rows[3:] + [row(CERTIFIED, 0.5, points=10_000)])))
    assert claims["solver_cases_met_fraction"].ours == 7 / 8
    assert claims["solver_max_peak_mib"].verdict == "missed"  # not measured for every case


def test_the_targets_and_repeats_are_pinned_not_read_from_the_file(tmp_path):
    with pytest.raises(ValueError, match="judged against"):
        write(tmp_path, every_case(), targets={**sb.TARGETS, "speedup": 1.5})
    with pytest.raises(ValueError, match="at least 3"):
        write(tmp_path, every_case(), repeats=1)


def test_a_missing_file_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="spca_solver.py"):
        sb.load(tmp_path / "absent.json")
