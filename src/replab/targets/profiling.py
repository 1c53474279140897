"""The ``profile@<target>`` stage: per-layer latencies measured on a target, written as a device profile.

The measurement runs on the target (``python -m replab.edge.layer_timing``, torch only); the profile is
assembled and validated here, with a ``source`` that names the device, its torch and where it ran, and
written atomically to ``profiles/<target>.yaml``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..edge.profiles import DeviceProfile, LayerRecord, Link
from .config import EmulatedTarget, LocalTarget, SshTarget, TargetError
from .remote import Remote

LOCAL_LINK_MBIT = 1000  # the local target's nominal link (loopback is not what a device would have)


def _link(target) -> Link:
    if isinstance(target, SshTarget):
        return Link(bandwidth_mbit=target.link_mbit, delay_ms=1.0)
    if isinstance(target, EmulatedTarget):
        return Link(bandwidth_mbit=target.caps()[2], delay_ms=0.1)
    return Link(bandwidth_mbit=LOCAL_LINK_MBIT, delay_ms=0.1)


def profile_target(name: str, out: str | Path, grid: str = "full", repeats: int = 3, remote: Remote | None = None):
    """Measure ``name`` and write its profile to ``out``; returns (profile, seconds on the target)."""
    from ..edge.profiles import reserved_profile_names

    out = Path(out)
    if name in reserved_profile_names(out.parent):
        raise TargetError(f"profiles/{name}.yaml is a shipped profile: give the target another name")
    remote = remote or Remote(name)
    facts = remote.probe()
    if not facts.get("torch"):
        raise TargetError(
            f"target {name}: torch does not import there ({facts.get('torch_error')}); see `replab target check {name}`"
        )
    target = remote.target
    emulated = isinstance(target, EmulatedTarget)
    cores, memory_mb, _ = target.caps() if emulated else (0, 0, 0)
    threads = (max(1, round(cores)) if cores >= 1 else 1) if emulated else 0
    argv = ["python", "-m", "replab.edge.layer_timing", "--out", "timing.json", "--grid", grid]
    argv += ["--repeats", str(repeats), "--threads", str(threads)]
    with tempfile.TemporaryDirectory(prefix="replab-profile-") as tmp:
        result = remote.run(argv, outputs={"timing.json": Path(tmp) / "timing.json"})
        raw = json.loads((Path(tmp) / "timing.json").read_text())
    where = {
        LocalTarget: "this machine (the `local` target)",
        SshTarget: f"{getattr(target, 'host', '')} over ssh",
        EmulatedTarget: f"this machine under a cgroup CPU quota of {cores:g} core(s)",
    }[type(target)]
    source = (
        f"measured on target {name} by `replab target profile`: {where}; {facts.get('cpu')}, "
        f"{facts.get('cpu_count')} cores, {raw['threads']} torch thread(s), torch {raw['torch']}, "
        f"Python {facts.get('python')}; link rate stated in the target definition, not measured"
    )
    profile = DeviceProfile(
        name=name,
        kind="measured",
        target=name,
        source=source,
        cpu_share=cores if emulated else float(raw["threads"]),
        memory_mb=memory_mb if emulated else float(facts.get("memory_total_mb") or 1024),
        gflops=raw["gflops"],
        link=_link(target),
        layers=[LayerRecord(**r) for r in raw["layers"]],
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(f".{out.name}.tmp")
    profile.save(tmp_out)
    os.replace(tmp_out, out)
    return profile, result.seconds
