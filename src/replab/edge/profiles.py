"""Device profiles: per-layer forward/backward latency, memory, link and CPU share of one device, as YAML.

The predictor and the partitioner read these; :func:`measure_layers` fills them on the current machine
(and, through ``replab target profile``, on attached devices over SSH).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from .layer_timing import matmul_gflops, time_layers, transformer_layer_times


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LayerRecord(_Strict):
    """One layer's features (what the latency predictor sees) and its measured times."""

    name: str
    type: str  # module class: Linear, Conv2d, MultiheadAttention, LayerNorm, ...
    in_features: int = Field(ge=0)
    out_features: int = Field(ge=0)
    seq_len: int = Field(ge=1)
    batch: int = Field(ge=1)
    flops: float = Field(ge=0, description="forward FLOPs (torch.utils.flop_counter)")
    bytes: float = Field(ge=0, description="parameter + input + output bytes")
    forward_ms: float | None = Field(default=None, ge=0)
    backward_ms: float | None = Field(default=None, ge=0)


class Link(_Strict):
    bandwidth_mbit: float = Field(gt=0)
    delay_ms: float = Field(ge=0)


class DeviceProfile(_Strict):
    name: str
    kind: Literal["measured", "published"]
    target: str | None = Field(default=None, description="the target it was measured on (`replab target profile`)")
    source: str = Field(min_length=1, description="where the numbers come from")
    cpu_share: float = Field(gt=0, description="cores available (0.5 = half a core)")
    memory_mb: float = Field(gt=0)
    gflops: float = Field(gt=0, description="sustained fp32 GFLOP/s of a matrix product on this device")
    link: Link
    layers: list[LayerRecord] = Field(default_factory=list)

    def descriptor(self) -> list[float]:
        """The device features the latency predictor conditions on."""
        return [self.cpu_share, self.gflops, self.memory_mb / 1024]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> DeviceProfile:
        raw = yaml.safe_load(Path(path).read_text())
        try:
            return cls.model_validate(raw)
        except Exception as exc:
            raise ValueError(f"{path}: not a valid device profile: {exc}") from None


def reserved_profile_names(folder: str | Path = "profiles") -> set[str]:
    """Profiles in ``folder`` that no target measured (shipped estimates, this machine's cgroup profiles): a
    target of that name would overwrite one."""
    out = set()
    for path in Path(folder).glob("*.yaml"):
        try:
            if yaml.safe_load(path.read_text()).get("target") is None:
                out.add(path.stem)
        except (OSError, AttributeError, yaml.YAMLError):
            out.add(path.stem)
    return out


def measure_layers(
    layers, example, repeats: int = 5, names: list[str] | None = None, min_seconds: float = 0.2
) -> list[LayerRecord]:
    """:func:`replab.edge.layer_timing.time_layers`, validated into records."""
    return [LayerRecord(**r) for r in time_layers(layers, example, repeats, names, min_seconds)]


def this_machine(name: str, cpu_share: float, memory_mb: float, link: Link, layers: list[LayerRecord]) -> DeviceProfile:
    return DeviceProfile(
        name=name,
        kind="measured",
        source=f"measured with replab.edge.profiles on {platform.machine()} ({platform.processor() or 'cpu'})",
        cpu_share=cpu_share,
        memory_mb=memory_mb,
        gflops=matmul_gflops(),
        link=link,
        layers=layers,
    )


def measure_transformer_layers(grid=None, repeats: int = 3) -> list[LayerRecord]:
    return [LayerRecord(**r) for r in transformer_layer_times(grid, repeats)]


def _measure_here(name: str, cpu_share: float, memory_mb: float, bandwidth_mbit: float, out: Path, source: str) -> None:
    import torch

    torch.set_num_threads(max(1, int(round(cpu_share))) if cpu_share >= 1 else 1)
    layers = measure_transformer_layers()
    profile = DeviceProfile(
        name=name,
        kind="measured",
        source=source,
        cpu_share=cpu_share,
        memory_mb=memory_mb,
        gflops=matmul_gflops(),
        link=Link(bandwidth_mbit=bandwidth_mbit, delay_ms=0.1),
        layers=layers,
    )
    profile.save(out)


def measure_profile(
    name: str, cpu_share: float, out: str | Path, memory_mb: float = 1024, bandwidth_mbit: float = 100
) -> Path:
    """Measure this machine as a device with ``cpu_share`` cores: inside a cgroup CPU quota when emulation is
    available (root), else as is (and the source says so)."""
    import json
    import subprocess
    import sys

    from .emulate import EmulatedCluster, EmulatedDevice

    out = Path(out)
    device = EmulatedDevice(name, cpu_share, int(memory_mb) + 1024, bandwidth_mbit)
    with EmulatedCluster([device]) as cluster:
        how = (
            f"cgroup v1 CPU quota {cpu_share:g} core(s)"
            if cluster.emulated
            else f"no CPU quota applied ({cluster.reason}); cpu_share is nominal"
        )
        source = f"measured with replab.edge.profiles on {platform.machine()} ({os.cpu_count()} cores), {how}"
        args = json.dumps([name, cpu_share, memory_mb, bandwidth_mbit, str(out), source])
        code = (
            "import json, sys; from pathlib import Path; from replab.edge.profiles import _measure_here as m; "
            "a = json.loads(sys.argv[1]); a[4] = Path(a[4]); m(*a)"
        )
        subprocess.run(cluster.command(0) + [sys.executable, "-c", code, args], check=True)
    return out


def _measure_repeats_here(grid: list[dict], repeats: int, out: str) -> None:
    import json

    import torch

    torch.set_num_threads(1)
    runs = [[r.model_dump() for r in measure_transformer_layers(grid)] for _ in range(repeats)]
    Path(out).write_text(json.dumps(runs))


def measure_repeats(
    cpu_share: float, grid: list[dict], repeats: int = 5, emulate: bool = True
) -> tuple[list[list[LayerRecord]], bool]:
    """The same layers measured ``repeats`` times in a row on one device (this machine under a ``cpu_share``
    CPU quota when ``emulate`` and emulation is available): the repeat noise a latency predictor is judged
    against. Returns the runs and whether the quota applied."""
    import json
    import subprocess
    import sys
    import tempfile

    from .emulate import EmulatedCluster, EmulatedDevice

    if repeats < 2:
        raise ValueError("repeat noise needs at least 2 repeats")
    device = EmulatedDevice("noise", cpu_share, 2048, 100)
    with tempfile.TemporaryDirectory() as tmp, EmulatedCluster([device], enabled=emulate) as c:
        out = Path(tmp) / "repeats.json"
        code = "import json, sys; import replab.edge.profiles as p; p._measure_repeats_here(*json.loads(sys.argv[1]))"
        args = json.dumps([grid, repeats, str(out)])
        subprocess.run([*c.command(0), sys.executable, "-c", code, args], check=True)
        runs = [[LayerRecord.model_validate(r) for r in run] for run in json.loads(out.read_text())]
        return runs, c.emulated


# Devices we cannot measure here, from their published figures (roofline estimates; each source says so).
PUBLISHED = {
    "jetson-agx-orin-cpu": dict(
        source="published figures, not measured: NVIDIA Jetson AGX Orin 64GB data sheet (12-core Arm Cortex-A78AE up "
        "to 2.2 GHz; LPDDR5 204.8 GB/s); CPU fp32 peak taken as 12 cores x 2.2 GHz x 16 FLOP/cycle (2x128-bit FMA) = "
        "422 GFLOP/s; efficiency 0.3 assumed; link: 802.11ac Wi-Fi, 200 Mbit/s assumed. Layer times are roofline "
        "estimates.",
        peak_gflops=422.4,
        bandwidth_gbs=204.8,
        efficiency=0.3,
        cpu_share=12,
        memory_mb=65536,
        link=Link(bandwidth_mbit=200, delay_ms=2),
    ),
    "phone-snapdragon-8gen2-cpu": dict(
        source="published figures, not measured: Qualcomm Snapdragon 8 Gen 2 product brief (Kryo CPU, 1x Cortex-X3 at "
        "3.2 GHz + 4 performance + 3 efficiency cores; LPDDR5x 4200 MHz, 4x16-bit = 67 GB/s); fp32 peak taken as 8 "
        "cores x 2.8 GHz (mean) x 16 FLOP/cycle = 358 GFLOP/s; efficiency 0.15 assumed (thermal limits, Termux CPU "
        "build); link: Wi-Fi, 100 Mbit/s assumed. Layer times are roofline estimates.",
        peak_gflops=358.4,
        bandwidth_gbs=67.0,
        efficiency=0.15,
        cpu_share=8,
        memory_mb=8192,
        link=Link(bandwidth_mbit=100, delay_ms=5),
    ),
}


def published_profiles(layers: list[LayerRecord]) -> list[DeviceProfile]:
    """The :data:`PUBLISHED` devices, their layer times estimated for ``layers``' features."""
    return [roofline_profile(name, layers=layers, **spec) for name, spec in PUBLISHED.items()]


def roofline_profile(
    name: str,
    source: str,
    peak_gflops: float,
    bandwidth_gbs: float,
    efficiency: float,
    cpu_share: float,
    memory_mb: float,
    link: Link,
    layers: list[LayerRecord],
) -> DeviceProfile:
    """A "published" profile: per-layer times estimated as ``max(FLOPs / (efficiency * peak), bytes /
    bandwidth)`` (backward twice forward) from a device's published figures. Estimates, not measurements:
    the source field says which figures were used."""
    estimated = []
    for rec in layers:
        fwd_s = max(rec.flops / (efficiency * peak_gflops * 1e9), rec.bytes / (bandwidth_gbs * 1e9))
        estimated.append(rec.model_copy(update={"forward_ms": 1e3 * fwd_s, "backward_ms": 2e3 * fwd_s}))
    return DeviceProfile(
        name=name,
        kind="published",
        source=source,
        cpu_share=cpu_share,
        memory_mb=memory_mb,
        gflops=efficiency * peak_gflops,
        link=link,
        layers=estimated,
    )


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(
        description="measure this machine as an edge device profile, or write the published ones"
    )
    p.add_argument("name", nargs="?")
    p.add_argument("--cpu-share", type=float)
    p.add_argument("--out")
    p.add_argument("--memory-mb", type=float, default=1024)
    p.add_argument("--bandwidth-mbit", type=float, default=100)
    p.add_argument(
        "--published",
        metavar="DIR",
        help="write the published-figure profiles into DIR, with the layer features of DIR/dev-cpu100.yaml",
    )
    a = p.parse_args()
    if a.published:
        base = DeviceProfile.load(Path(a.published) / "dev-cpu100.yaml").layers
        for prof in published_profiles(base):
            print(prof.save(Path(a.published) / f"{prof.name}.yaml"))
    elif a.name and a.cpu_share and a.out:
        print(measure_profile(a.name, a.cpu_share, a.out, a.memory_mb, a.bandwidth_mbit))
    else:
        p.error("give NAME --cpu-share X --out FILE, or --published DIR")
