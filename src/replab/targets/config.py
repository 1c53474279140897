"""Target definitions: the machines device stages run on.

They differ per machine (addresses, users, keys), so they live in an untracked file, ``targets.local.yaml``
at the repository root (git-ignored; ``targets.example.yaml`` is the tracked template; ``REPLAB_TARGETS``
names another file). ``local`` (this machine) is built in and always there, so a clone without a file runs
as before.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from ..schema import Strict

TARGETS_FILE = Path("targets.local.yaml")
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,39}$"
# Host names and users are passed to ssh as single argv items; a leading '-' would read as an option.
_HOST = r"^[A-Za-z0-9_.:\[\]%-]+$"


class TargetError(RuntimeError):
    """A target is undefined, unreachable, misconfigured, or its command failed; the message says what to fix."""


class LocalTarget(Strict):
    kind: Literal["local"] = "local"
    workdir: str = Field(default="build/targets/local", description="where shipped code and runs go")
    run_timeout_s: float = Field(default=3600, gt=0)


class SshTarget(Strict):
    kind: Literal["ssh"]
    host: str = Field(pattern=_HOST, description="address or ssh host alias")
    port: int | None = Field(default=None, ge=1, le=65535, description="default: ssh's (22, or ~/.ssh/config's)")
    user: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*$")
    identity_file: str | None = Field(default=None, description="private key (default: ssh's own choice)")
    known_hosts: str | None = Field(default=None, description="known_hosts file (default: ~/.ssh/known_hosts)")
    python: str = Field(default="python3", min_length=1, description="the target's Python, with torch")
    workdir: str = Field(default=".cache/replab", min_length=1, description="remote folder (relative: to home)")
    connect_timeout_s: float = Field(default=10, gt=0)
    run_timeout_s: float = Field(default=3600, gt=0)
    address: str | None = Field(
        default=None,
        pattern=_HOST,
        description="the address other ranks reach (default: host; set it if host is an alias)",
    )
    gloo_ifname: str | None = Field(default=None, description="GLOO_SOCKET_IFNAME on the target (eth0, wlan0)")
    link_mbit: float = Field(default=100, gt=0, description="its link rate for the planner (stated, not measured)")

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host


class EmulatedTarget(Strict):
    """This machine under a device's caps (cgroup CPU quota and memory limit; needs root): those of a device
    profile (``profile: dev-cpu25`` reads profiles/dev-cpu25.yaml), or given directly."""

    kind: Literal["emulated"]
    profile: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$", description="profiles/<profile>.yaml")
    cpu_share: float | None = Field(default=None, ge=0.1, le=64, description="cores (0.25 = a quarter of one core)")
    memory_mb: int | None = Field(default=None, gt=256)
    bandwidth_mbit: float | None = Field(default=None, gt=0)
    workdir: str = Field(default="build/targets/emulated")
    run_timeout_s: float = Field(default=3600, gt=0)

    @model_validator(mode="after")
    def _one_source(self):
        if (self.profile is None) == (self.cpu_share is None):
            raise ValueError("an emulated target takes either `profile` (a device profile's caps) or `cpu_share`")
        return self

    def caps(self, profiles: Path = Path("profiles")) -> tuple[float, int, float]:
        """(cores, memory MB, link Mbit/s) it runs under."""
        if self.profile is None:
            return self.cpu_share, self.memory_mb or 2048, self.bandwidth_mbit or 100
        from ..edge.profiles import DeviceProfile

        device = DeviceProfile.load(profiles / f"{self.profile}.yaml")
        return device.cpu_share, self.memory_mb or int(device.memory_mb), device.link.bandwidth_mbit


Target = Annotated[LocalTarget | SshTarget | EmulatedTarget, Field(discriminator="kind")]


class TargetsFile(Strict):
    targets: dict[Annotated[str, Field(pattern=NAME_PATTERN)], Target] = Field(default_factory=dict)


def targets_file() -> Path:
    return Path(os.environ.get("REPLAB_TARGETS", TARGETS_FILE))


def load(path: str | Path | None = None) -> dict[str, LocalTarget | SshTarget | EmulatedTarget]:
    """Every defined target, ``local`` first. A missing file defines only ``local``."""
    path = Path(path) if path is not None else targets_file()
    defined: dict = {}
    if path.exists():
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise TargetError(f"{path}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
        # YAML reads a bare "local:" (no fields) as null.
        for section in (raw.get("targets") or {}).values() if isinstance(raw, dict) else ():
            if section is None:
                raise TargetError(f"{path}: a target needs at least `kind:`")
        try:
            defined = dict(TargetsFile.model_validate(raw, strict=False).targets)
        except ValidationError as exc:
            problems = []
            for e in exc.errors():
                key = ".".join(str(p) for p in e["loc"] if not str(p).endswith("Target"))
                problems.append(f"{key}: {e['msg']}")
            raise TargetError(f"{path}: " + "; ".join(problems)) from None
    if "local" in defined and not isinstance(defined["local"], LocalTarget):
        raise TargetError(f"{path}: `local` is this machine; give the target another name")
    return {"local": defined.pop("local", LocalTarget()), **defined}


def get(name: str, path: str | Path | None = None):
    """One target by name; an unknown name lists the known ones and where they are defined."""
    known = load(path)
    if name not in known:
        where = Path(path) if path is not None else targets_file()
        hint = "" if where.exists() else f" ({where} does not exist: copy targets.example.yaml to start one)"
        raise TargetError(f"no target {name!r}; known: {', '.join(known)}{hint}")
    return known[name]
