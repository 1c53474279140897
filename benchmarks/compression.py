"""Round-trip throughput of AccEPT's b-bit compression (compress: range + quantise + pack; decompress: unpack +
dequantise) as a fraction of a plain copy of the same fp32 tensor into a preallocated buffer, measured in the
same run: fraction = copy time / (compress time + decompress time), i.e. round-trip bandwidth / copy bandwidth.

CPU: the fused C kernel (replab.kernels.cpu_codec, single thread) and the eager torch path, both on one torch
thread (the copy too; --threads to change), at 1 M, 4 M and 16 M values and 2 / 4 / 8 bits; copy, C and torch
arms interleaved (replab.measure.repeat), median and range of the per-round fractions.
Target: >= 0.5 of copy for the C kernel at 4 M values, 4 bits.

On a CUDA machine it also times the torch path and the Triton kernels on the GPU (the card is named). Results go
to benchmarks/results/compression_<cpu|gpu>.md (--out to change, --out - for none).

    python benchmarks/compression.py [--sizes 1000000 4000000 16000000] [--reps 5]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch

from replab.edge.compression import BITS, compress, decompress
from replab.kernels import cpu_codec
from replab.measure import Spread, machine, repeat

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = {"numel": 4_000_000, "bits": 4, "fraction": 0.5}
HEADER = (
    "| device | backend | values | bits | ratio | compress (ms) | decompress (ms) | copy (ms) "
    "| copy GB/s | fraction of copy: median (range) |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
)


def arms_for(x: torch.Tensor, dst: torch.Tensor, bits: int, backends: list[str], sync) -> dict:
    """Copy, and compress / decompress per backend, each call followed by ``sync`` (a no-op on CPU)."""

    def timed(fn):  # returns nothing: repeat() keeps what an arm returns, and each output is freed as in use
        def call():
            fn()
            sync()

        return call

    arms = {"copy": timed(lambda: dst.copy_(x))}
    for backend in backends:
        c = compress(x, bits, backend)
        arms[f"{backend}:compress"] = timed(lambda backend=backend: compress(x, bits, backend))
        arms[f"{backend}:decompress"] = timed(lambda c=c, backend=backend: decompress(c, backend))
    return arms


def measure(device: str, numel: int, backends: list[str], reps: int, label: str) -> list[dict]:
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None
    x = torch.randn(numel, generator=torch.Generator().manual_seed(numel)).to(device)
    dst = torch.empty_like(x)
    dst.copy_(x)  # touched: the copy, not page faults
    rows = []
    for bits in BITS:
        runs = repeat(arms_for(x, dst, bits, backends, sync), reps, warmup=3, device=device)
        s = runs.spreads
        for backend in backends:
            fraction = Spread.of(
                [
                    cp / (pk + up)
                    for cp, pk, up in zip(
                        s["copy"].values, s[f"{backend}:compress"].values, s[f"{backend}:decompress"].values
                    )
                ]
            )
            rows.append(
                {
                    "device": label,
                    "backend": backend,
                    "numel": numel,
                    "bits": bits,
                    "ratio": 32 // bits,
                    "compress_ms": 1e3 * s[f"{backend}:compress"].median,
                    "decompress_ms": 1e3 * s[f"{backend}:decompress"].median,
                    "copy_ms": 1e3 * s["copy"].median,
                    "copy_gbs": 2 * numel * 4 / s["copy"].median / 1e9,  # read + write
                    "fraction": fraction,
                }
            )
    return rows


def line(r: dict) -> str:
    f = r["fraction"]
    return (
        f"| {r['device']} | {r['backend']} | {r['numel']:,} | {r['bits']} | {r['ratio']}x | {r['compress_ms']:.2f} "
        f"| {r['decompress_ms']:.2f} | {r['copy_ms']:.2f} | {r['copy_gbs']:.1f} "
        f"| {f.median:.2f} ({f.low:.2f}–{f.high:.2f}) |"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 4_000_000, 16_000_000])
    p.add_argument("--reps", type=int, default=5, help="interleaved repeats per arm (>= 3)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for the CPU arms (the C kernel uses one)")
    p.add_argument("--out", default=None, help="results file (default benchmarks/results/compression_<device>.md)")
    args = p.parse_args()
    if args.reps < 3:
        p.error("--reps must be >= 3")
    if not cpu_codec.available():
        cpu_codec.build()  # raises, with the reason, where there is no C compiler
    cuda = torch.cuda.is_available()
    gpu = torch.cuda.get_device_name() if cuda else None
    threads = torch.get_num_threads()
    out = [
        f"# Compression round trip / copy — {machine().describe()}"
        + (f"; GPU {gpu}" if gpu else "")
        + f"; CPU arms on {args.threads} torch thread(s)\n",
        f"`python benchmarks/compression.py --reps {args.reps}`: {args.reps} interleaved repeats (+3 warm-up rounds); "
        "compress = range + quantise + pack, decompress = unpack + dequantise (new output tensor each call), "
        "copy = `dst.copy_(src)` into a preallocated buffer; fraction = copy time / (compress + decompress time), "
        "the median and range of the per-round values.\n",
        HEADER,
    ]
    print("\n".join(out), flush=True)
    rows = []
    torch.set_num_threads(args.threads)
    try:
        for numel in args.sizes:
            for r in measure("cpu", numel, ["c", "torch"], args.reps, "cpu"):
                rows.append(r)
                out.append(line(r))
                print(out[-1], flush=True)
    finally:
        torch.set_num_threads(threads)
    if cuda:
        for numel in args.sizes:
            for r in measure("cuda", numel, ["torch", "triton"], args.reps, gpu):
                out.append(line(r))
                print(out[-1], flush=True)
    hit = [r for r in rows if (r["backend"], r["numel"], r["bits"]) == ("c", TARGET["numel"], TARGET["bits"])]
    if hit:
        f = hit[0]["fraction"].median
        verdict = "met" if f >= TARGET["fraction"] else "MISSED"
        out.append(
            f"\nTarget (C kernel, {TARGET['numel']:,} values, {TARGET['bits']} bits): >= {TARGET['fraction']} of "
            f"copy; measured {f:.2f} (median): {verdict}."
        )
        print(out[-1])
    dest = args.out or str(RESULTS / f"compression_{slug(gpu) if gpu else 'cpu'}.md")
    if dest != "-":
        Path(dest).write_text("\n".join(out) + "\n")
        print(f"\nwrote {dest}")
    return 0


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower().removeprefix("nvidia ")).strip("_")


if __name__ == "__main__":
    sys.exit(main())
