"""``replab target check``: is a target ready for device stages, and if not, what to fix."""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import TargetError
from .remote import Remote

MIN_FREE_DISK_MB = 500  # code, inputs and a profile; checkpoints need more (the stage says so when it runs)
MIN_FREE_MEMORY_MB = 300  # torch and gloo alone take ~350 MB resident


@dataclass
class CheckResult:
    name: str
    facts: dict
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        f = self.facts
        gpu = f.get("gpu") or "none"
        mem = f.get("memory_available_mb")
        rows = [
            ("python", f"{f.get('python')} ({f.get('executable')})"),
            ("torch", f.get("torch") or f"not importable: {f.get('torch_error', '?')}"),
            ("gloo", {True: "available", False: "NOT available", None: "unknown (no torch)"}[f.get("gloo")]),
            ("cpu", f"{f.get('cpu')} ({f.get('cpu_count')} cores, {f.get('machine')})"),
            ("gpu", gpu),
            ("memory", f"{mem:.0f} MB free of {f.get('memory_total_mb'):.0f} MB" if mem else "unknown"),
            ("disk", f"{f.get('disk_free_mb', 0):.0f} MB free in {f.get('workdir')}"),
        ]
        return [f"  {k:7} {v}" for k, v in rows]


MIN_PYTHON = (3, 8)  # the shipped code's syntax
MIN_TORCH_PROFILE = (2, 1)  # torch.utils.flop_counter
MIN_TORCH_PIPELINE = (2, 4)  # torch.distributed.pipelining


def _version(text: str | None) -> tuple[int, int]:
    try:
        major, minor = (text or "").split("+")[0].split(".")[:2]
        return int(major), int("".join(c for c in minor if c.isdigit()) or 0)
    except ValueError:
        return (0, 0)


def problems_of(facts: dict, pipeline: bool = False) -> list[str]:
    """What stops device stages on a machine with these facts, each with its fix (``pipeline``: also what
    stops a pipeline rank)."""
    out = []
    if _version(facts.get("python")) < MIN_PYTHON:
        out.append(f"Python {facts.get('python')} is older than 3.8: point `python:` at a newer one")
    if not facts.get("torch"):
        out.append(
            f"torch does not import ({facts.get('torch_error', 'unknown error')}): install it for this Python "
            "(Jetson: NVIDIA's JetPack wheel for your L4T release; Termux: `pkg install python-torch`)"
        )
    elif _version(facts["torch"]) < MIN_TORCH_PROFILE:
        out.append(f"torch {facts['torch']} is older than 2.1 (no flop counter): install a newer wheel")
    elif not facts.get("gloo"):
        out.append(
            "torch has no gloo backend (some Jetson wheels are built without USE_DISTRIBUTED): install a wheel "
            "with distributed support; pipeline ranks cannot run here (profiling still can)"
        )
    elif pipeline and _version(facts["torch"]) < MIN_TORCH_PIPELINE:
        out.append(f"torch {facts['torch']} has no torch.distributed.pipelining (2.4+): install a newer wheel")
    mem = facts.get("memory_available_mb")
    if mem is not None and mem < MIN_FREE_MEMORY_MB:
        out.append(f"only {mem:.0f} MB of memory free (a rank needs ~{MIN_FREE_MEMORY_MB} MB): close other programs")
    disk = facts.get("disk_free_mb", 0)
    if disk < MIN_FREE_DISK_MB:
        out.append(f"only {disk:.0f} MB free in {facts.get('workdir')}: free space or set `workdir:` elsewhere")
    return out


def check(name: str, target=None, pipeline: bool = False) -> CheckResult:
    """Probe one target. Raises :class:`TargetError` when it cannot be reached or has no Python."""
    facts = Remote(name, target).probe()
    return CheckResult(name, facts, problems_of(facts, pipeline))


def torch_minor(version: str | None) -> str | None:
    if not version:
        return None
    parts = version.split("+")[0].split(".")
    return ".".join(parts[:2])


def compatible(results: list[CheckResult]) -> list[str]:
    """A multi-host run needs one torch major.minor everywhere (the pipeline's wire format and gloo's
    collectives change between releases): the problems, naming each target's version."""
    minors = {r.name: torch_minor(r.facts.get("torch")) for r in results}
    if len(set(minors.values())) <= 1:
        return []
    listed = ", ".join(f"{n}: torch {r.facts.get('torch')}" for n, r in zip(minors, results))
    return [f"targets run different torch releases ({listed}); install one major.minor on all of them"]


def require(results: list[CheckResult]) -> None:
    """Raise with every problem of ``results`` (for a multi-host run)."""
    problems = [f"{r.name}: {p}" for r in results for p in r.problems] + compatible(results)
    if problems:
        raise TargetError("; ".join(problems))
