"""What a paper's run claims, in one schema shared by the notebooks, the tests and the reports.

A :class:`Claim` holds our figure, the paper's *published* value with its source (table, figure, abstract), a
target fixed before the run, and the verdict computed from them: ``met``, ``missed`` or ``n/a`` with the reason.
Each paper's ``experiments.headline(...)`` builds its :class:`PaperResults`; :func:`save` splits them into

- ``<paper>.json``: the headline scalars at top level (a DVC metrics file: ``dvc exp show``, ``dvc metrics diff``);
- ``<paper>.timing.json``: the timing-dependent scalars and the machine (also a DVC metrics file);
- ``<paper>.claims.json``: every claim with its paper value, target, verdict and scale (reports, README).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .measure import Machine, Spread
from .measure import machine as machine_info

Verdict = Literal["met", "missed", "n/a"]
Method = Literal["paper", "reconstruction", "stand-in", "baseline"]
Value = bool | int | float | str | list[int] | list[float] | None

_KEY = r"^[a-z][a-z0-9_]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PaperValue(_Model):
    """A number the paper published, and where: ``"Table 2"``, ``"Fig. 3 (read off)"``, ``"abstract"``."""

    value: Value
    source: str = Field(min_length=1)
    note: str = ""

    def describe(self) -> str:
        return f"{fmt(self.value)} ({self.source}{'; ' + self.note if self.note else ''})"


class Target(_Model):
    """A level fixed before the run: ours ``op`` ``level``."""

    op: Literal[">=", "<=", "=="]
    level: Value

    def holds(self, ours: Value) -> bool:
        if self.op == "==":
            return ours == self.level
        if not isinstance(ours, (int, float)) or not isinstance(self.level, (int, float)):
            raise ValueError(f"target {self.op} {self.level!r} needs numbers, got {ours!r}")
        return ours >= self.level if self.op == ">=" else ours <= self.level

    def describe(self) -> str:
        return f"{self.op} {fmt(self.level)}"


class Claim(_Model):
    """One headline figure of a paper's run."""

    key: str = Field(pattern=_KEY, description="the scalar's name in metrics/<paper>.json")
    metric: str = Field(min_length=1, description="what is measured, in words")
    ours: Value
    unit: str = ""
    paper: PaperValue | None = None
    target: Target | None = None
    verdict: Verdict
    reason: str = Field("", description="why n/a; or what a miss means")
    scale: str = Field(min_length=1, description="the scale we ran at (the paper's may differ)")
    method: Method = Field(
        description="the paper's method, our reconstruction of it, a stand-in for it, or a baseline we compare with"
    )
    timing: bool = Field(False, description="depends on the machine's speed: goes to <paper>.timing.json")
    measured: bool = Field(
        False,
        description="a measurement of this machine other than speed (e.g. peak resident memory): kept in "
        "<paper>.json, but a re-run on the same inputs may differ slightly",
    )
    machine: Machine | None = None
    spread: Spread | None = None
    note: str = ""

    @model_validator(mode="after")
    def _consistent(self):
        # The verdict is a function of ours and the target: a file cannot say "met" for a figure that misses.
        expected = judge(self.ours, self.target)
        if self.verdict != expected:
            raise ValueError(f"claim {self.key}: verdict {self.verdict!r} but ours and the target give {expected!r}")
        if self.verdict == "n/a" and not self.reason:
            raise ValueError(f"claim {self.key}: an n/a verdict needs its reason")
        if self.ours is None and not self.reason:
            raise ValueError(f"claim {self.key}: a missing value needs its reason")
        if (self.timing or self.measured) and self.machine is None:
            raise ValueError(f"claim {self.key}: a timing or measured claim names the machine it was measured on")
        return self

    def describe_ours(self) -> str:
        text = fmt(self.ours) + (f" {self.unit}" if self.unit and self.ours is not None else "")
        if self.spread is not None and len(self.spread.values) > 1:
            text += f" (range {fmt(self.spread.low)}–{fmt(self.spread.high)}, n = {len(self.spread.values)})"
        return text


def _missing(value: Value) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def judge(ours: Value, target: Target | None) -> Verdict:
    """n/a without a target; with one, met or missed — a value that was not measured misses its target."""
    if target is None:
        return "n/a"
    if _missing(ours):
        return "missed"
    return "met" if target.holds(ours) else "missed"


def claim(
    key: str,
    metric: str,
    ours: Value,
    *,
    scale: str,
    method: Method,
    target: Target | tuple[str, Value] | None = None,
    paper: PaperValue | None = None,
    unit: str = "",
    timing: bool = False,
    measured: bool = False,
    machine: Machine | None = None,
    spread: Spread | None = None,
    note: str = "",
    reason: str = "",
) -> Claim:
    """Build a claim and judge it (:func:`judge`): ``met``/``missed`` against its target, else ``n/a`` with
    ``reason``. The value is judged and stored exactly as measured (no rounding before the comparison)."""
    if isinstance(target, tuple):
        target = Target(op=target[0], level=target[1])
    if hasattr(ours, "tolist"):  # numpy scalars and arrays
        ours = ours.tolist()
    verdict = judge(ours, target)
    if _missing(ours):
        reason = reason or ("no value: the run did not reach or measure it" if target else "not measured in this run")
        ours = None
    elif target is None:
        reason = reason or "no target: reported for comparison"
    return Claim(
        key=key,
        metric=metric,
        ours=ours,
        unit=unit,
        paper=paper,
        target=target,
        verdict=verdict,
        reason=reason,
        scale=scale,
        method=method,
        timing=timing,
        measured=measured,
        machine=machine,
        spread=spread,
        note=note,
    )


class PaperResults(_Model):
    """A paper's run: its claims, the scale it ran at and the parameters it used."""

    paper: str
    profile: str
    scale: dict[str, Value]
    params: dict[str, object] = Field(default_factory=dict)
    claims: list[Claim]
    timings: dict[str, float] = Field(default_factory=dict, description="seconds per section, not claims")
    machine: Machine = Field(default_factory=machine_info, description="where this run ran")

    @model_validator(mode="after")
    def _unique(self):
        keys = [c.key for c in self.claims]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ValueError(f"claim keys must be unique; repeated: {duplicates}")
        reserved = {"targets_met", "targets_missed", "machine", "cores", "torch"}
        reserved |= {_timing_key(t) for t in self.timings}
        clash = sorted(set(keys) & reserved)
        if clash:
            raise ValueError(f"claim keys clash with the metrics files' own keys: {clash}")
        return self

    def get(self, key: str) -> Claim:
        for c in self.claims:
            if c.key == key:
                return c
        raise KeyError(f"no claim {key!r} in {self.paper}; claims: {[c.key for c in self.claims]}")

    def counts(self) -> dict[str, int]:
        verdicts = [c.verdict for c in self.claims]
        return {"met": verdicts.count("met"), "missed": verdicts.count("missed"), "n/a": verdicts.count("n/a")}


def fmt(value: Value, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    if isinstance(value, list):
        return ", ".join(fmt(v, digits) for v in value)
    return str(value)


def _scalar(value: Value) -> float | int | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def headline_scalars(results: PaperResults, timing: bool) -> dict[str, object]:
    """The top-level scalars of ``<paper>.json`` (``timing=False``) or ``<paper>.timing.json``, with the verdict
    counts of the claims in that file."""
    chosen = [c for c in results.claims if c.timing == timing]
    out: dict[str, object] = {c.key: _scalar(c.ours) for c in chosen if _scalar(c.ours) is not None}
    verdicts = [c.verdict for c in chosen]
    out.update(targets_met=verdicts.count("met"), targets_missed=verdicts.count("missed"))
    if timing:
        out.update({_timing_key(k): round(v, 3) for k, v in results.timings.items()})
        m = results.machine
        out.update(machine=m.describe(), cores=m.cores, torch=m.torch)
    return out


def _timing_key(name: str) -> str:
    return name if name.endswith("_s") else f"{name}_s"


def paths(folder: Path, paper: str) -> dict[str, Path]:
    """The four files of a paper's run. Only the ``*.timing.json`` ones change between runs on the same inputs."""
    folder = Path(folder)
    return {
        "metrics": folder / f"{paper}.json",
        "timing": folder / f"{paper}.timing.json",
        "claims": folder / f"{paper}.claims.json",
        "timing_claims": folder / f"{paper}.claims.timing.json",
    }


def _dump(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def _compact(claim_json: dict) -> dict:
    """A claim as written: ``measured`` only where set (files of papers without such claims stay as they were)."""
    return {k: v for k, v in claim_json.items() if k != "measured" or v}


def save(results: PaperResults, folder: Path) -> dict[str, Path]:
    """Write a paper's run into ``folder``: scalars and claims, the timing-dependent ones apart."""
    out = paths(folder, results.paper)
    _dump(out["metrics"], headline_scalars(results, timing=False))
    _dump(out["timing"], headline_scalars(results, timing=True))
    body = results.model_dump(mode="json", exclude={"timings", "machine"})
    body["claims"] = [_compact(c) for c in body["claims"] if not c["timing"]]
    _dump(out["claims"], body)
    timed = results.model_dump(mode="json", include={"timings", "machine"})
    timed["claims"] = [_compact(c.model_dump(mode="json")) for c in results.claims if c.timing]
    _dump(out["timing_claims"], timed)
    return out


class ClaimsFileError(ValueError):
    """A claims file is missing, not JSON, or does not match the schema."""


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClaimsFileError(f"{path}: not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ClaimsFileError(f"{path}: not a valid claims file (not JSON: {exc}); re-run its stage") from None
    if not isinstance(data, dict):
        raise ClaimsFileError(f"{path}: not a valid claims file (expected an object); re-run its stage")
    return data


def load(path: Path) -> PaperResults:
    """A paper's claims file, with its timing claims from ``<paper>.claims.timing.json`` beside it (if present)."""
    path = Path(path)
    data = _read(path)
    files = [path]
    timed_path = path.with_name(path.name.replace(".claims.json", ".claims.timing.json"))
    if timed_path != path:
        if not timed_path.exists():  # else the timing claims would vanish and the reader's machine stand in
            raise ClaimsFileError(f"{timed_path}: not found (written with {path.name}); re-run its stage")
        timed = _read(timed_path)
        files.append(timed_path)
        data = {**data, **{k: v for k, v in timed.items() if k != "claims"}}
        data["claims"] = list(data.get("claims", [])) + list(timed.get("claims", []))
    try:
        return PaperResults.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ClaimsFileError(
            f"{' + '.join(map(str, files))}: not a valid claims file ({where}: {first['msg']}); "
            "re-run its stage with `dvc repro`"
        ) from None


def deterministic(claims: Iterable[Claim]) -> list[dict]:
    """The claims that must not change between runs on the same inputs (tests compare these)."""
    return [c.model_dump(mode="json") for c in claims if not (c.timing or c.measured)]


def measured_keys(claims: Iterable[Claim]) -> set[str]:
    """Keys of ``<paper>.json`` that are measurements of the machine (allowed to differ between re-runs)."""
    return {c.key for c in claims if c.measured}
