"""Pipeline-parallel training with ``torch.distributed.pipelining`` over gloo: one process per device, the
layer chain split at the partitioner's points, optional b-bit compression of the tensors that cross stages.

Compression rides inside the pipeline's own sends: a sending stage ends with :class:`_Encode`, whose output is
the packed bytes viewed as float32 (plus min and step), and the receiving stage starts with :class:`_Decode`.
In the backward pass ``_Decode`` compresses the incoming gradient into a tensor of the same packed shape and
``_Encode`` expands it again, so activations and gradients both travel at ``bits`` per value.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

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


@dataclass
class PipelineConfig:
    starts: list[int]  # first layer of each stage (from the partitioner)
    n_microbatches: int = 4
    bits: int | None = None  # None: send fp32
    schedule: str = "gpipe"  # gpipe | 1f1b
    lr: float = 3e-3
    steps: int = 20
    model: dict = field(default_factory=dict)  # tiny_transformer kwargs
    batch: int = 16
    seed: int = 0


def stage_module(layers: list[nn.Module], config: PipelineConfig, stage: int, boundary_shapes) -> nn.Module:
    n_stages = len(config.starts)
    ends = config.starts[1:] + [len(layers)]
    parts: list[nn.Module] = []
    if config.bits and stage > 0:
        parts.append(_Decode(boundary_shapes[stage - 1], config.bits))
    parts += layers[config.starts[stage] : ends[stage]]
    if config.bits and stage < n_stages - 1:
        parts.append(_Encode(config.bits))
    return nn.Sequential(*parts)


def boundary_shapes(layers, example, starts) -> list[tuple[int, ...]]:
    """Shape of the micro-batch tensor leaving each stage but the last (for the decoders)."""
    shapes, x = [], example
    ends = starts[1:] + [len(layers)]
    with torch.no_grad():
        for a, b in zip(starts, ends):
            for layer in layers[a:b]:
                x = layer(x)
            shapes.append(tuple(x.shape))
    return shapes[:-1]


def run_rank(rank: int, world: int, config: PipelineConfig) -> tuple[list[float], list[float]]:
    """One rank's part of training (the process group must be initialised): ``(losses, step_end_seconds)``.
    Only the last rank has losses (the mean over micro-batches of each step)."""
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

    from .models import chain_task, lm_loss, tiny_transformer

    if world != len(config.starts):
        raise ValueError(f"{world} processes for {len(config.starts)} stages")
    torch.manual_seed(config.seed)
    layers = tiny_transformer(seed=config.seed, **config.model)
    seq_len, vocab = layers[0].positions.num_embeddings, layers[0].tokens.num_embeddings
    data = chain_task(config.steps, config.batch, seq_len, vocab, seed=config.seed)
    micro = config.batch // config.n_microbatches
    shapes = boundary_shapes(layers, data[0][0][:micro], config.starts)
    module = stage_module(layers, config, rank, shapes)
    example = data[0][0][:micro] if rank == 0 else _example_input(layers, config, rank, shapes, micro)
    stage = PipelineStage(module, rank, world, torch.device("cpu"), input_args=(example,))
    schedule_cls = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}[config.schedule]
    schedule = schedule_cls(stage, config.n_microbatches, loss_fn=lm_loss)
    optimiser = torch.optim.Adam(module.parameters(), lr=config.lr) if any(True for _ in module.parameters()) else None
    losses, step_end = [], []
    began = time.perf_counter()
    for x, y in data:
        if optimiser:
            optimiser.zero_grad()
        if rank == 0:
            schedule.step(x)
        elif rank == world - 1:
            step_losses: list[torch.Tensor] = []
            schedule.step(target=y, losses=step_losses)
            losses.append(float(torch.stack(step_losses).detach().mean()))
            # Progress on stderr, which the launcher streams to the terminal as it comes.
            if len(losses) % max(1, config.steps // 10) == 0 or len(losses) == config.steps:
                print(f"step {len(losses)}/{config.steps} loss {losses[-1]:.4f}", file=sys.stderr, flush=True)
        else:
            schedule.step()
        if optimiser:
            optimiser.step()
        step_end.append(time.perf_counter() - began)
    return losses, step_end


def _example_input(layers, config, rank, shapes, micro):
    shape = shapes[rank - 1]
    if config.bits:
        return torch.zeros(packed_len(math.prod(shape), config.bits))
    return torch.zeros(*shape)


def single_process_losses(config: PipelineConfig) -> list[float]:
    """The same training on one process (the reference the pipeline must match without compression)."""
    from .models import chain_task, lm_loss, tiny_transformer

    torch.manual_seed(config.seed)
    layers = tiny_transformer(seed=config.seed, **config.model)
    model = nn.Sequential(*layers)
    seq_len, vocab = layers[0].positions.num_embeddings, layers[0].tokens.num_embeddings
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    losses = []
    micro = config.batch // config.n_microbatches
    for x, y in chain_task(config.steps, config.batch, seq_len, vocab, seed=config.seed):
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


def _collect(pipe, sink) -> None:
    for line in pipe:
        sink(line)


def _forward(rank: int, tail: collections.deque):
    """Keep the last lines (for the error message) and show each on the terminal, prefixed by its rank."""
    from ..progress import in_stage

    out = sys.__stderr__ if in_stage() else sys.stderr

    def sink(line: str) -> None:
        tail.append(line)
        if out is not None:
            print(f"  rank {rank}: {line.rstrip()}", file=out, flush=True)

    return sink


def launch(
    config: PipelineConfig,
    commands=None,
    master_addr: str = "127.0.0.1",
    env_extra=None,
    timeout: float | None = None,
) -> dict:
    """Run every rank as its own process and collect their results: ``{"losses", "seconds", "ranks"}``.

    ``commands[r]``, where given, is an argv prefix for rank r (for example a cgroup join and ``ip netns
    exec``); ``env_extra[r]`` adds environment variables (GLOO_SOCKET_IFNAME in a namespace). ``timeout``
    (default: 10 minutes plus 10 s a step) bounds the whole run; the first rank to fail stops the others."""
    import tempfile

    timeout = 600 + 10 * config.steps if timeout is None else timeout

    world = len(config.starts)
    port = free_port()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(asdict(config), f)
    procs: list[subprocess.Popen] = []
    readers: list[threading.Thread] = []
    stdout: dict[int, list[str]] = {}
    stderr: dict[int, collections.deque] = {}
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
            proc = subprocess.Popen(
                prefix + [sys.executable, "-m", "replab.edge.pipeline", f.name],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            procs.append(proc)
            stdout[rank], stderr[rank] = [], collections.deque(maxlen=200)
            # One reader per pipe: no rank blocks on a full pipe while another is read, and each rank's
            # stderr (its progress) reaches the terminal as it is written.
            readers += [
                threading.Thread(target=_collect, args=(proc.stdout, stdout[rank].append), daemon=True),
                threading.Thread(target=_collect, args=(proc.stderr, _forward(rank, stderr[rank])), daemon=True),
            ]
            readers[-2].start()
            readers[-1].start()
        # Poll every rank: a rank that fails leaves the others blocked in gloo, so stop them at once.
        deadline = time.monotonic() + timeout
        while not all(p.poll() == 0 for p in procs) and not any(p.poll() not in (None, 0) for p in procs):
            if time.monotonic() > deadline:
                raise RuntimeError(f"pipeline ranks did not finish within {timeout:.0f} s")
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            p.wait()
        for t in readers:
            t.join(timeout=5)
        os.unlink(f.name)
    failed = [(r, "".join(stderr[r])[-2000:]) for r, p in enumerate(procs) if p.returncode != 0]
    if failed:
        raise RuntimeError("pipeline ranks failed:\n" + "\n".join(f"rank {r}: {err}" for r, err in failed))
    results = []
    for r in range(world):
        lines = "".join(stdout[r]).strip().splitlines()
        if not lines:
            raise RuntimeError(f"pipeline rank {r} exited cleanly but wrote no result line")
        results.append(json.loads(lines[-1]))
    return {
        "losses": results[-1]["losses"],
        "step_seconds": results[-1]["step_seconds"],
        "seconds": max(r["seconds"] for r in results),
        "ranks": results,
    }


def main() -> int:
    """``python -m replab.edge.pipeline CONFIG.json``: one rank, configured by the environment (RANK,
    WORLD_SIZE, MASTER_ADDR, MASTER_PORT; GLOO_SOCKET_IFNAME in a namespace). Rank 0 ... last write a JSON
    result line to stdout; the last rank's holds the losses and the wall time."""
    import sys

    config = PipelineConfig(**json.loads(open(sys.argv[1]).read()))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        start = time.perf_counter()
        losses, step_seconds = run_rank(rank, world, config)
        dist.barrier()
        print(
            json.dumps(
                {"rank": rank, "losses": losses, "seconds": time.perf_counter() - start, "step_seconds": step_seconds}
            ),
            flush=True,
        )
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["PipelineConfig", "launch", "run_rank", "single_process_losses", "packed_len"]
