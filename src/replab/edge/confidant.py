"""Confidant's experiments (a reconstruction): a GPT-2 split over memory-capped edge devices by the memory
model, trained as a pipeline, every rank's peak memory measured; and the head scheduler on this machine.

Ranks run with glibc's mmap threshold fixed (:data:`RANK_ENV`): by default glibc raises it after large frees,
so freed activations stay in the heap and the resident high-water mark drifts above the live tensors. With it
fixed, large tensors are returned to the system when freed, as a memory-tight device wants, and the peak
follows the memory model.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .emulate import EmulatedCluster, EmulatedDevice
from .memory_model import MemoryPlan, StageMemory, layer_footprints, plan_memory, stage_memory
from .partition import InfeasiblePartition
from .pipeline import PipelineConfig, build_layers, launch, training_batches

RANK_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}


class DeviceOutOfMemory(RuntimeError):
    """A rank was killed by the kernel for going over its device's memory cap."""


def run_on_devices(
    config: PipelineConfig, devices: list[EmulatedDevice], emulate: bool = True, log_dir=None, rank_env=RANK_ENV
) -> dict:
    """Train ``config`` with one rank per device (inside an emulated cluster where possible): launch()'s
    result plus ``emulated`` and ``cap_hits`` (per device, how often it reached its memory cap). A rank the
    kernel kills for exceeding its device's cap raises :class:`DeviceOutOfMemory` naming the device, instead of
    a bare exit code."""
    with EmulatedCluster(devices, enabled=emulate) as cluster:
        n = len(devices)
        try:
            result = launch(
                config,
                commands={i: cluster.command(i) for i in range(n)},
                master_addr=cluster.master_addr,
                env_extra={i: {**cluster.env(i), **(rank_env or {})} for i in range(n)},
                log_dir=log_dir,
            )
        except RuntimeError as exc:
            over = [
                f"{devices[i].name} (stage {i}, cap {devices[i].memory_mb} MB)"
                for i, k in enumerate(cluster.oom_kills())
                if k
            ]
            if over:
                raise DeviceOutOfMemory(
                    f"killed by the kernel for exceeding its memory cap: {', '.join(over)}. Give the devices more "
                    "memory, use more devices, or a smaller batch or model."
                ) from exc
            raise
        result["emulated"] = bool(cluster.emulated)
        result["cap_hits"] = cluster.cap_hits()
    return result


@dataclass(frozen=True)
class LanguageModel:
    """What the runs train: the model's settings, its token stream, and where the start comes from."""

    model: dict
    tokens: str
    init: str | None
    start: str  # for the report: "GPT-2 checkpoint ..." or "scratch ..."
    n_tokens: int


def prepare_language_model(data_dir, work_dir, scale, pretrained: str | None) -> LanguageModel:
    """The WordNet gloss text as one token stream (``work_dir/tokens.npy``), tokenised by a cached GPT-2's own
    tokenizer where ``pretrained`` is cached (its dimensions then replace the scale's), else by a byte-level
    BPE of ``scale.vocab`` tokens trained on the glosses (the model then starts from scratch)."""
    import json

    from tokenizers import Tokenizer

    from .llm import find_cached_gpt2, gloss_texts, token_stream, train_tokenizer

    texts = gloss_texts(data_dir)
    folder = find_cached_gpt2(pretrained)
    model = dict(
        n_blocks=scale.n_blocks, d_model=scale.d_model, n_heads=scale.n_heads, vocab=scale.vocab, seq_len=scale.seq_len
    )
    if folder is not None and (folder / "tokenizer.json").exists():
        cfg = json.loads((folder / "config.json").read_text())
        model.update(n_blocks=cfg["n_layer"], d_model=cfg["n_embd"], n_heads=cfg["n_head"], vocab=cfg["vocab_size"])
        tokenizer, init = Tokenizer.from_file(str(folder / "tokenizer.json")), str(folder)
        start = f"the cached GPT-2 checkpoint {pretrained} ({folder.name}), fine-tuned on WordNet glosses"
    else:
        tokenizer, init = train_tokenizer(texts, scale.vocab), None
        if folder is not None:
            why = f"the cached {pretrained!r} has no tokenizer.json"
        else:
            why = f"{pretrained!r} is not cached here" if pretrained else "no checkpoint configured"
        start = f"scratch: a short pre-training on WordNet glosses from a random start ({why})"
    stream = token_stream(tokenizer, texts)
    if stream.max() >= model["vocab"]:
        raise ValueError(f"the tokenizer gives ids up to {stream.max()}, beyond the model's vocabulary")
    path = Path(work_dir) / "tokens.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, stream)
    return LanguageModel(model, str(path), init, start, int(len(stream)))


def pipeline_config(lm: LanguageModel, scale, params, starts, steps: int, lora: bool = False, seed: int = 0):
    return PipelineConfig(
        starts=list(starts),
        n_microbatches=scale.n_microbatches,
        schedule=params.schedule,
        lr=params.lr,
        steps=steps,
        model=lm.model,
        batch=scale.batch,
        seed=seed,
        arch="gpt2",
        tokens=lm.tokens,
        init=lm.init,
        lora_rank=params.lora_rank if lora else 0,
    )


def footprints(config: PipelineConfig):
    """Per-layer footprints of the whole model for one micro-batch of the first step (with the loss)."""
    from .models import lm_loss

    layers = build_layers(config)
    x, y = training_batches(config)[0]
    micro = config.batch // config.n_microbatches
    return layer_footprints(layers, x[:micro], lm_loss, y[:micro])


def devices_of(kind, n: int, memory_mb: int | None = None) -> list[EmulatedDevice]:
    """``n`` devices of ``kind``; CPU shares scaled down where together they would ask for more cores than the
    machine has, and the memory cap replaced by ``memory_mb`` where given (a cap lifted to measure)."""
    cores = os.cpu_count() or 1
    share = min(kind.cpu_share, cores / n)
    cap = kind.memory_mb if memory_mb is None else memory_mb
    return [EmulatedDevice(f"{kind.name}{i}", share, cap, kind.bandwidth_mbit) for i in range(n)]


def plan_or_refusal(fp, n: int, capacity_mb: float, n_micro: int, schedule: str, runtime_mb: float):
    """(the plan, None) where ``n`` devices of ``capacity_mb`` fit the model, else (the least-memory plan
    without a cap, the refusal message)."""
    try:
        return plan_memory(fp, n, capacity_mb, n_micro, schedule, runtime_mb), None
    except InfeasiblePartition as exc:
        return plan_memory(fp, n, math.inf, n_micro, schedule, runtime_mb), str(exc)


def memory_rows(label: str, result: dict, plan: MemoryPlan, cap_mb: float, lifted: bool) -> list[dict]:
    """One row per rank: measured VmHWM beside the modelled peak and its components."""
    rows = []
    for rank, (measured, modelled) in enumerate(zip((r["peak_rss_mb"] for r in result["ranks"]), plan.stages)):
        rows.append(
            {
                "run": label,
                "stage": rank,
                "layers": f"{result['ranks'][rank]['layers'][0]}-{result['ranks'][rank]['layers'][-1]}",
                "measured_mb": measured,
                "modelled_mb": modelled.total,
                "error": modelled.total / measured - 1,
                "cap_mb": cap_mb,
                "cap_lifted": lifted,
                **{f"model_{k}_mb": v for k, v in modelled.as_dict().items() if k != "total"},
            }
        )
    return rows


def throughput(result: dict, tokens_per_step: int) -> float:
    """Training tokens per second after the first step (which includes start-up and shape inference)."""
    t = result["step_seconds"]
    if len(t) < 2:
        raise ValueError("throughput needs at least two steps")
    return tokens_per_step * (len(t) - 1) / (t[-1] - t[0])


def single_stage_memory(fp, n_micro: int, schedule: str, runtime_mb: float) -> StageMemory:
    return stage_memory(fp, range(len(fp)), 1, 0, n_micro, schedule, runtime_mb)


def machine_memory_mb() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20


@dataclass
class Run:
    """One measured run: its split, the plan behind it, the cap its devices had, and launch()'s result."""

    label: str
    n_devices: int
    plan: MemoryPlan
    cap_mb: float
    lifted: str | None  # why the device cap was lifted for this run (the model does not fit under it)
    result: dict
    lora: bool = False
    cpu_share: float = 1.0
    fixed_malloc: bool = True  # ranks ran with RANK_ENV (else glibc's default)


def memory_study(lm: LanguageModel, scale, params, runtime_mb: dict, emulate: bool, log_dir=None, say=print):
    """Train the single device (memory uncapped: the baseline the split is judged against) and each of
    ``scale.device_counts`` devices of ``params.device`` (under the device's cap where the memory model fits
    the model under it, else with the cap lifted to measure, and the refusal kept), a LoRA run on the headline
    count, and one device with glibc's default allocator settings for context. ``runtime_mb``:
    :func:`~.memory_model.probe_runtime_mb` without and with LoRA (``{"full": .., "lora": ..}``)."""
    kind, n_micro, schedule = params.device, scale.n_microbatches, params.schedule
    fp = {lora: footprints(pipeline_config(lm, scale, params, [0], 2, lora=lora)) for lora in (False, True)}
    refusals: dict[int, str] = {}
    runs: list[Run] = []
    log_dir = Path(log_dir) if log_dir else None

    def launch_run(label, n, steps, lora=False, rank_env=RANK_ENV):
        runtime = runtime_mb["lora" if lora else "full"]
        plan, refusal = plan_or_refusal(fp[lora], n, kind.memory_mb, n_micro, schedule, runtime)
        if n == 1:  # the baseline: one device with all the memory of this machine
            cap, lifted = machine_memory_mb(), "the single-device baseline (uncapped)"
        elif refusal:
            refusals[n] = refusal
            cap, lifted = math.ceil(1.25 * plan.peak_mb), f"the model does not fit under the cap: {refusal}"
        else:
            cap, lifted = kind.memory_mb, None
        say(f"{label}: {n} device(s), layers from {list(plan.starts)}, cap {cap} MB, {steps} steps")
        config = pipeline_config(lm, scale, params, plan.starts, steps, lora=lora)
        folder = log_dir / label if log_dir else None
        devices = devices_of(kind, n, memory_mb=cap)
        result = run_on_devices(config, devices, emulate=emulate, log_dir=folder, rank_env=rank_env)
        runs.append(Run(label, n, plan, cap, lifted, result, lora, devices[0].cpu_share, rank_env is not None))

    launch_run("single", 1, scale.steps)
    for n in scale.device_counts:
        launch_run(f"{n}_devices", n, scale.steps if n == params.headline_devices else scale.memory_steps)
    launch_run(f"{params.headline_devices}_devices_lora", params.headline_devices, scale.memory_steps, lora=True)
    # Context, outside the memory model's check: one device with glibc's default (adaptive) mmap threshold.
    launch_run("single_glibc_default", 1, scale.memory_steps, rank_env=None)
    return {"runs": runs, "refusals": refusals, "footprints": fp}


__all__ = [
    "RANK_ENV",
    "DeviceOutOfMemory",
    "LanguageModel",
    "devices_of",
    "footprints",
    "memory_rows",
    "memory_study",
    "Run",
    "pipeline_config",
    "plan_or_refusal",
    "prepare_language_model",
    "run_on_devices",
    "single_stage_memory",
    "throughput",
]
