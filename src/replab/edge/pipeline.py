"""Pipeline-parallel training with ``torch.distributed.pipelining`` over gloo: one process per device, the
layer chain split at the partitioner's points, optional b-bit compression of the tensors that cross stages.

Compression rides inside the pipeline's own sends: a sending stage ends with :class:`_Encode`, whose output is
the packed bytes viewed as float32 (plus min and step), and the receiving stage starts with :class:`_Decode`.
In the backward pass ``_Decode`` compresses the incoming gradient into a tensor of the same packed shape and
``_Encode`` expands it again, so activations and gradients both travel at ``bits`` per value.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from .compression import Compressed, compress, decompress

log = logging.getLogger(__name__)


def packed_len(numel: int, bits: int) -> int:
    """float32 slots carrying ``numel`` values at ``bits``: packed bytes rounded up to 4, plus min and step."""
    return math.ceil(math.ceil(numel * bits / 8) / 4) + 2


def _encode(x: torch.Tensor, bits: int, length: int) -> torch.Tensor:
    """``x`` compressed onto the wire. A non-finite tensor (a diverged run, or the uninitialised buffers the
    pipeline sends while it infers shapes) goes as NaN, so it stays NaN on the other side."""
    if not torch.isfinite(x).all():
        return torch.full((length,), float("nan"))
    return _to_wire(compress(x, bits), length)


def _to_wire(c: Compressed, length: int) -> torch.Tensor:
    payload = c.payload
    padded = torch.zeros((length - 2) * 4, dtype=torch.uint8)
    padded[: payload.numel()] = payload
    return torch.cat([padded.view(torch.float32), torch.tensor([c.minimum, c.step], dtype=torch.float32)])


def _from_wire(wire: torch.Tensor, shape, bits: int) -> torch.Tensor:
    numel = math.prod(shape)
    if torch.isnan(wire[-2]):
        return torch.full(tuple(shape), float("nan"))
    payload = wire[:-2].contiguous().view(torch.uint8)[: math.ceil(numel * bits / 8)]
    c = Compressed(payload, tuple(shape), torch.float32, bits, float(wire[-2]), float(wire[-1]))
    return decompress(c)


class _EncodeFn(torch.autograd.Function):
    """Whole micro-batch tensor -> one compressed wire tensor (per-tensor min-max, as AccEPT specifies)."""

    @staticmethod
    def forward(ctx, x, bits):
        ctx.shape, ctx.bits = x.shape, bits
        return _encode(x, bits, packed_len(x.numel(), bits))

    @staticmethod
    def backward(ctx, wire_grad):
        return _from_wire(wire_grad, ctx.shape, ctx.bits), None


class _DecodeFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, wire, shape, bits):
        ctx.bits, ctx.length = bits, wire.shape[0]
        return _from_wire(wire, shape, bits)

    @staticmethod
    def backward(ctx, grad):
        return _encode(grad, ctx.bits, ctx.length), None, None


class _Encode(nn.Module):
    def __init__(self, bits: int):
        super().__init__()
        self.bits = bits

    def forward(self, x):
        return _EncodeFn.apply(x, self.bits)


class _Decode(nn.Module):
    def __init__(self, shape, bits: int):
        super().__init__()
        self.shape, self.bits = tuple(shape), bits

    def forward(self, wire):
        return _DecodeFn.apply(wire, self.shape, self.bits)


SCHEDULES = ("gpipe", "1f1b")
WIRE_BITS = (None, 2, 4, 8)
MODEL_KEYS = ("n_blocks", "d_model", "n_heads", "vocab", "seq_len")
ARCHS = ("tiny", "gpt2")  # models.tiny_transformer on chain_task; llm.gpt2_layers on a token stream file


@dataclass
class PipelineConfig:
    starts: list[int]  # first layer of each stage (from the partitioner)
    n_microbatches: int = 4
    bits: int | None = None  # None: send fp32
    schedule: str = "gpipe"  # gpipe | 1f1b
    lr: float = 3e-3
    steps: int = 20
    model: dict = field(default_factory=dict)  # the architecture's MODEL_KEYS
    batch: int = 16
    seed: int = 0
    arch: str = "tiny"
    tokens: str | None = None  # gpt2: an int32 .npy token stream to draw windows from
    init: str | None = None  # gpt2: a checkpoint folder to start from (None: the seed's initialisation)
    lora_rank: int = 0  # > 0: train only LoRA adapters (PEFT) of this rank on each stage

    def __post_init__(self):
        starts = list(self.starts)
        if not starts or starts[0] != 0 or any(b <= a for a, b in zip(starts, starts[1:])):
            raise ValueError(f"starts must begin at 0 and strictly increase (one per stage), got {starts}")
        if self.bits not in WIRE_BITS:
            raise ValueError(f"bits must be one of {WIRE_BITS}, got {self.bits!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.n_microbatches < 1 or self.batch % self.n_microbatches:
            raise ValueError(
                f"batch ({self.batch}) must be a positive multiple of n_microbatches ({self.n_microbatches})"
            )
        if self.steps < 1 or not self.lr > 0:
            raise ValueError(f"steps must be >= 1 and lr > 0, got steps={self.steps}, lr={self.lr}")
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.arch == "gpt2" and not self.tokens:
            raise ValueError("arch gpt2 trains on a token stream: give tokens (an int32 .npy file)")
        if self.lora_rank < 0 or (self.lora_rank and self.arch != "gpt2"):
            raise ValueError(f"lora_rank must be >= 0, and is for arch gpt2 only (got {self.lora_rank}, {self.arch})")
        unknown = sorted(set(self.model) - set(MODEL_KEYS))
        if unknown:
            raise ValueError(f"unknown model settings {unknown} (known: {', '.join(MODEL_KEYS)})")
        kwargs = self.model_kwargs()
        if kwargs["d_model"] % kwargs["n_heads"]:
            raise ValueError(f"d_model ({kwargs['d_model']}) must be a multiple of n_heads ({kwargs['n_heads']})")
        if starts[-1] >= self.n_layers:
            raise ValueError(f"stage starts {starts} leave no layer for the last stage ({self.n_layers} layers)")

    def model_kwargs(self) -> dict:
        defaults = inspect.signature(_builder(self.arch)).parameters
        return {k: self.model.get(k, defaults[k].default) for k in MODEL_KEYS}

    @property
    def n_layers(self) -> int:
        return self.model_kwargs()["n_blocks"] + 2

    def stage_range(self, stage: int) -> range:
        ends = list(self.starts[1:]) + [self.n_layers]
        return range(self.starts[stage], ends[stage])


def _builder(arch: str):
    from .llm import gpt2_layers
    from .models import tiny_transformer

    return {"tiny": tiny_transformer, "gpt2": gpt2_layers}[arch]


def build_layers(config: PipelineConfig, only: range | None = None) -> list[nn.Module | None]:
    """The configured model's layers (``None`` outside ``only``), from a checkpoint where one is given."""
    layers = _builder(config.arch)(seed=config.seed, only=only, **config.model_kwargs())
    if config.init:
        from .llm import load_checkpoint

        with torch.no_grad():
            load_checkpoint(layers, config.init)
    if config.lora_rank:
        for i, layer in enumerate(layers):
            if layer is not None:
                torch.manual_seed(config.seed * 1_000_003 + i + 500_000)  # adapters drawn per layer, like weights
                layers[i] = with_lora(layer, config.lora_rank)
    return layers


def training_batches(config: PipelineConfig) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The (inputs, targets) of every step: every rank draws the same ones from the seed."""
    kwargs = config.model_kwargs()
    if config.arch == "gpt2":
        import numpy as np

        from .llm import stream_batches

        stream = np.load(config.tokens, mmap_mode="r")  # pages only the drawn windows
        return stream_batches(stream, config.steps, config.batch, kwargs["seq_len"], seed=config.seed)
    from .models import chain_task

    return chain_task(config.steps, config.batch, kwargs["seq_len"], kwargs["vocab"], seed=config.seed)


def with_lora(module: nn.Module, rank: int) -> nn.Module:
    """PEFT LoRA adapters of ``rank`` on the projections, token embedding and head in ``module``; only they
    train."""
    from peft import LoraConfig, inject_adapter_in_model

    targets = ["c_attn", "c_proj", "c_fc", "wte", "lm_head"]
    present = {name.rsplit(".", 1)[-1] for name, _ in module.named_modules()} & set(targets)
    if not present:
        raise ValueError("no LoRA target (c_attn, c_proj, c_fc, wte, lm_head) in this stage")
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=sorted(present))
    with warnings.catch_warnings():  # GPT-2's Conv1D wants fan_in_fan_out, which PEFT sets itself (and says so)
        warnings.filterwarnings("ignore", message="fan_in_fan_out is set to False")
        module = inject_adapter_in_model(config, module)
    for name, p in module.named_parameters():
        p.requires_grad_("lora_" in name)
    return module


def stage_module(layers: list[nn.Module | None], config: PipelineConfig, stage: int, boundary) -> nn.Module:
    """Stage ``stage``'s layers, with the decoder of its incoming and the encoder of its outgoing boundary."""
    parts: list[nn.Module] = []
    if config.bits and stage > 0:
        parts.append(_Decode(boundary, config.bits))
    parts += [layers[i] for i in config.stage_range(stage)]
    if config.bits and stage < len(config.starts) - 1:
        parts.append(_Encode(config.bits))
    return nn.Sequential(*parts)


class StageClock:
    """Compute time of one stage per micro-batch, forward and backward, from module hooks (sends and receives
    run asynchronously, outside these intervals). A backward ends with the gradient for the stage's input or,
    where the input is token ids, with the last parameter gradient accumulated."""

    def __init__(self, module: nn.Module):
        self.events: list[tuple[str, float]] = []

        def mark(kind: str) -> None:
            self.events.append((kind, time.perf_counter()))

        def on_input(m, args):
            mark("f0")
            if args and isinstance(args[0], torch.Tensor) and args[0].requires_grad:
                args[0].register_hook(lambda g: mark("b1"))  # gradient for the input: backward done

        def on_output(m, args, out):
            mark("f1")
            if isinstance(out, torch.Tensor) and out.requires_grad:
                out.register_hook(lambda g: mark("b0"))  # gradient for the output arrived: backward starts

        # Tensor hooks rather than full backward hooks: those misfire on a stage fed token ids.
        module.register_forward_pre_hook(on_input)
        module.register_forward_hook(on_output)
        for p in module.parameters():
            if p.requires_grad:  # frozen under LoRA
                p.register_post_accumulate_grad_hook(lambda p: mark("b1"))

    def intervals(self) -> tuple[list[float], list[float]]:
        """(forward seconds, backward seconds), one per micro-batch, in order."""
        fwd: list[float] = []
        bwd: list[float] = []
        open_f = open_b = last_b = None
        for kind, t in [*self.events, ("end", 0.0)]:
            if kind in ("f0", "b0", "end") and open_b is not None:
                bwd.append(last_b - open_b)
                open_b = None
            if kind == "f0":
                open_f = t
            elif kind == "f1" and open_f is not None:
                fwd.append(t - open_f)
                open_f = None
            elif kind == "b0":
                open_b = last_b = t
            elif kind == "b1" and open_b is not None:
                last_b = t
        return fwd, bwd


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (MB): VmHWM, which starts afresh at exec (getrusage's
    ru_maxrss would carry over the peak of the parent the launcher forked)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: the best available


def run_rank(rank: int, world: int, config: PipelineConfig) -> dict:
    """One rank's part of training (the process group must be initialised). The rank builds only its own
    stage's layers. Returns ``losses`` (the last rank's: per-step mean over micro-batches), ``step_seconds``
    (wall time at each step's end), this stage's per-micro-batch compute ``forward_s`` / ``backward_s``, and
    memory: ``rss_start_mb`` (before the model) and ``peak_rss_mb``."""
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

    from .models import boundary_shape, lm_loss

    if world != len(config.starts):
        raise ValueError(f"{world} processes for {len(config.starts)} stages")
    rss_start = peak_rss_mb()
    kwargs = config.model_kwargs()
    layers = build_layers(config, only=config.stage_range(rank))
    data = training_batches(config)
    micro = config.batch // config.n_microbatches
    shape = boundary_shape(micro, **kwargs)
    module = stage_module(layers, config, rank, shape)
    clock = StageClock(module)
    if rank == 0:
        example = data[0][0][:micro]
    else:
        example = torch.zeros(packed_len(math.prod(shape), config.bits)) if config.bits else torch.zeros(*shape)
    stage = PipelineStage(module, rank, world, torch.device("cpu"), input_args=(example,))
    schedule_cls = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}[config.schedule]
    schedule = schedule_cls(stage, config.n_microbatches, loss_fn=lm_loss)
    params = [p for p in module.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=config.lr) if params else None
    losses: list[float] = []
    step_end: list[float] = []
    began = time.perf_counter()
    for x, y in data:
        if optimiser:
            optimiser.zero_grad()
        last = rank == world - 1
        step_losses: list[torch.Tensor] = []
        # The first stage feeds the inputs, the last one the targets (one stage alone does both).
        schedule.step(*((x,) if rank == 0 else ()), **(dict(target=y, losses=step_losses) if last else {}))
        if last:
            losses.append(float(torch.stack(step_losses).detach().mean()))
            # Progress on stderr, which the launcher logs and shows on the terminal.
            if len(losses) % max(1, config.steps // 10) == 0 or len(losses) == config.steps:
                print(f"step {len(losses)}/{config.steps} loss {losses[-1]:.4f}", file=sys.stderr, flush=True)
        if optimiser:
            optimiser.step()
        step_end.append(time.perf_counter() - began)
    forward_s, backward_s = clock.intervals()
    return {
        "losses": losses,
        "step_seconds": step_end,
        "forward_s": forward_s,
        "backward_s": backward_s,
        "layers": list(config.stage_range(rank)),
        "rss_start_mb": rss_start,
        "peak_rss_mb": peak_rss_mb(),
    }


def single_process_losses(config: PipelineConfig) -> list[float]:
    """The same training on one process (the reference the pipeline must match without compression)."""
    from .models import lm_loss

    model = nn.Sequential(*build_layers(config))
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    losses = []
    micro = config.batch // config.n_microbatches
    for x, y in training_batches(config):
        optimiser.zero_grad()
        total = 0.0
        for i in range(config.n_microbatches):
            sl = slice(i * micro, (i + 1) * micro)
            loss = lm_loss(model(x[sl]), y[sl])
            (loss / config.n_microbatches).backward()  # the schedules average micro-batch gradients
            total += float(loss.detach())
        optimiser.step()
        losses.append(total / config.n_microbatches)
    return losses


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _LogTail:
    """Follows a rank's log file: new complete lines go to the terminal, prefixed by the rank."""

    def __init__(self, rank: int, path: Path):
        self.rank, self.path, self.offset, self.partial = rank, path, 0, ""

    def pump(self) -> None:
        from ..progress import in_stage

        try:
            with open(self.path, errors="replace") as f:
                f.seek(self.offset)
                chunk = f.read()
                self.offset = f.tell()
        except FileNotFoundError:
            return
        *lines, self.partial = (self.partial + chunk).split("\n")
        out = sys.__stderr__ if in_stage() else sys.stderr
        for line in lines:
            if out is not None:
                print(f"  rank {self.rank}: {line}", file=out, flush=True)

    def tail(self, n_chars: int = 2000) -> str:
        try:
            return self.path.read_text(errors="replace")[-n_chars:]
        except FileNotFoundError:
            return ""


def _die_with_launcher() -> None:
    """Have the kernel kill this rank when the launcher dies, even by SIGKILL, so no rank is left waiting in
    gloo for peers that are gone (the argv prefixes exec, so the launcher stays the parent)."""
    if sys.platform != "linux":
        return
    import ctypes

    launcher = os.getppid()
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != launcher:  # it died before the request took effect
        raise SystemExit("the launcher is gone")


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def _stop(procs: list[subprocess.Popen], grace: float = 5.0) -> None:
    """SIGTERM the ranks still running, SIGKILL those that outlive ``grace`` seconds, and reap all of them."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def launch(
    config: PipelineConfig,
    commands=None,
    master_addr: str = "127.0.0.1",
    env_extra=None,
    timeout: float | None = None,
    log_dir: str | Path | None = None,
) -> dict:
    """Run every rank as its own process and collect their results: ``{"losses", "step_seconds", "seconds",
    "ranks"}`` (``ranks``: each rank's :func:`run_rank` result).

    ``commands[r]``, where given, is an argv prefix for rank r (for example a cgroup join and ``ip netns
    exec``); ``env_extra[r]`` adds environment variables (GLOO_SOCKET_IFNAME in a namespace). Each rank writes
    its output to ``log_dir/rank<r>.log`` (kept; a temporary directory, removed afterwards, when not given),
    which is also shown on the terminal as it grows. All ranks are polled under one deadline (``timeout``;
    default 10 minutes plus 10 s a step); the first rank to fail, the deadline or an interrupt stops all."""
    timeout = 600 + 10 * config.steps if timeout is None else timeout
    world = len(config.starts)
    port = free_port()
    with contextlib.ExitStack() as stack:
        # SIGTERM (a stopped stage, a killed job) unwinds through the `finally` below, which stops the ranks.
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGTERM)
            if previous in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, _terminate)
                stack.callback(signal.signal, signal.SIGTERM, previous)
        if log_dir is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="replab-ranks-")))
        else:
            folder = Path(log_dir)
            folder.mkdir(parents=True, exist_ok=True)
        config_file = folder / "config.json"
        config_file.write_text(json.dumps(asdict(config), indent=1))
        procs: list[subprocess.Popen] = []
        tails: list[_LogTail] = []
        cause = None  # the first rank seen failing (the others are then stopped by us)
        try:
            for rank in range(world):
                env = {
                    **os.environ,
                    "RANK": str(rank),
                    "WORLD_SIZE": str(world),
                    "MASTER_ADDR": master_addr,
                    "MASTER_PORT": str(port),
                    "OMP_NUM_THREADS": "1",
                    **((env_extra or {}).get(rank, {})),
                }
                prefix = list((commands or {}).get(rank, []))
                result_file, log_file = folder / f"rank{rank}.json", folder / f"rank{rank}.log"
                result_file.unlink(missing_ok=True)
                # Output to files, not pipes: a chatty rank can never block on a full pipe.
                with open(log_file, "w") as log:
                    procs.append(
                        subprocess.Popen(
                            prefix + [sys.executable, "-m", "replab.edge.pipeline", str(config_file), str(result_file)],
                            env=env,
                            stdin=subprocess.DEVNULL,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                        )
                    )
                tails.append(_LogTail(rank, log_file))
            deadline = time.monotonic() + timeout
            while True:
                for t in tails:
                    t.pump()
                codes = [p.poll() for p in procs]
                cause = next((r for r, c in enumerate(codes) if c not in (None, 0)), None)
                if cause is not None or all(c == 0 for c in codes):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pipeline ranks did not finish within {timeout:.0f} s (logs: {folder})")
                time.sleep(0.05)
        finally:
            _stop(procs)
            for t in tails:
                t.pump()
        failed = [r for r, p in enumerate(procs) if p.returncode != 0]
        if failed:
            first = failed[0] if cause is None else cause
            where = "" if log_dir is None else f" (logs: {folder})"
            raise RuntimeError(
                f"pipeline ranks failed{where}; rank {first} (exit {procs[first].returncode}):\n{tails[first].tail()}"
            )
        results = []
        for r in range(world):
            path = folder / f"rank{r}.json"
            if not path.exists():
                raise RuntimeError(f"pipeline rank {r} exited cleanly but wrote no result")
            results.append(json.loads(path.read_text()))
    return {
        "losses": results[-1]["losses"],
        "step_seconds": results[-1]["step_seconds"],
        "seconds": max(r["seconds"] for r in results),
        "ranks": results,
    }


def main() -> int:
    """``python -m replab.edge.pipeline CONFIG.json RESULT.json``: one rank, configured by the environment
    (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT; GLOO_SOCKET_IFNAME in a namespace); its result is written to
    RESULT.json (atomically) once every rank has finished."""
    _die_with_launcher()
    config = PipelineConfig(**json.loads(Path(sys.argv[1]).read_text()))
    out = Path(sys.argv[2])
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        start = time.perf_counter()
        result = run_rank(rank, world, config)
        dist.barrier()
        result.update(rank=rank, seconds=time.perf_counter() - start)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result))
        tmp.replace(out)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["PipelineConfig", "StageClock", "launch", "run_rank", "single_process_losses", "packed_len"]
