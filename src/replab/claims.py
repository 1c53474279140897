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
Method = Literal["paper", "reconstruction", "stand-in"]
Value = int | float | str | list[int] | list[float] | None

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
            raise TypeError(f"target {self.op} {self.level!r} needs numbers, got {ours!r}")
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
    method: Method = Field(description="the paper's method, our reconstruction of it, or a stand-in")
    timing: bool = Field(False, description="depends on the machine's speed: goes to <paper>.timing.json")
    machine: Machine | None = None
    spread: Spread | None = None
    note: str = ""

    @model_validator(mode="after")
    def _consistent(self):
        if self.verdict == "n/a" and not self.reason:
            raise ValueError(f"claim {self.key}: an n/a verdict needs its reason")
        if self.verdict != "n/a" and self.target is None:
            raise ValueError(f"claim {self.key}: a {self.verdict} verdict needs a target")
        if self.timing and self.machine is None:
            raise ValueError(f"claim {self.key}: a timing claim names the machine it was measured on")
        return self

    def describe_ours(self) -> str:
        text = fmt(self.ours) + (f" {self.unit}" if self.unit and self.ours is not None else "")
        if self.spread is not None and len(self.spread.values) > 1:
            text += f" (range {fmt(self.spread.low)}–{fmt(self.spread.high)}, n = {len(self.spread.values)})"
        return text


def _missing(value: Value) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


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
    machine: Machine | None = None,
    spread: Spread | None = None,
    note: str = "",
    reason: str = "",
) -> Claim:
    """Build a claim and judge it: ``met``/``missed`` against its target, else ``n/a`` with ``reason``."""
    if isinstance(target, tuple):
        target = Target(op=target[0], level=target[1])
    if hasattr(ours, "tolist"):  # numpy scalars and arrays
        ours = ours.tolist()
    if isinstance(ours, float) and math.isfinite(ours):
        ours = float(f"{ours:.6g}")  # stable bytes across platforms' last-digit noise
    if _missing(ours):
        verdict, reason = "n/a", reason or "not measured in this run"
        ours = None
    elif target is None:
        verdict, reason = "n/a", reason or "no target: reported for comparison"
    else:
        verdict = "met" if target.holds(ours) else "missed"
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
    """The top-level scalars of ``<paper>.json`` (``timing=False``) or ``<paper>.timing.json``."""
    out: dict[str, object] = {
        c.key: _scalar(c.ours) for c in results.claims if c.timing == timing and _scalar(c.ours) is not None
    }
    if timing:
        out.update({(k if k.endswith("_s") else f"{k}_s"): round(v, 3) for k, v in results.timings.items()})
        m = results.machine
        out.update(machine=m.describe(), cores=m.cores, torch=m.torch)
    else:
        counts = results.counts()
        out.update(targets_met=counts["met"], targets_missed=counts["missed"])
    return out


def paths(folder: Path, paper: str) -> dict[str, Path]:
    folder = Path(folder)
    return {
        "metrics": folder / f"{paper}.json",
        "timing": folder / f"{paper}.timing.json",
        "claims": folder / f"{paper}.claims.json",
    }


def _dump(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def save(results: PaperResults, folder: Path) -> dict[str, Path]:
    """Write the three files of one paper's run into ``folder``."""
    out = paths(folder, results.paper)
    _dump(out["metrics"], headline_scalars(results, timing=False))
    _dump(out["timing"], headline_scalars(results, timing=True))
    _dump(out["claims"], results.model_dump(mode="json"))
    return out


class ClaimsFileError(ValueError):
    """A claims file is missing, not JSON, or does not match the schema."""


def load(path: Path) -> PaperResults:
    path = Path(path)
    try:
        return PaperResults.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClaimsFileError(f"{path}: not found") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ClaimsFileError(
            f"{path}: not a valid claims file ({where}: {first['msg']}); re-run its stage with `dvc repro`"
        ) from None


def deterministic(claims: Iterable[Claim]) -> list[dict]:
    """The claims that must not change between runs on the same inputs (tests compare these)."""
    return [c.model_dump(mode="json") for c in claims if not c.timing]
