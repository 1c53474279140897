"""Confidant's head scheduler on this machine's real backends: per-head latency tables measured here, the
schedule they give, and its measured wall time against every backend alone (arms interleaved, medians of
rounds with their spread). Where a GPU is present a CUDA backend joins the CPU pools.

Targets (fixed in advance, from the issue): speedup over the best single backend >= 1.0 on CPU pools alone,
>= 1.3 where CPU + CUDA are measured.

    python benchmarks/confidant_heads.py --out benchmarks/results/confidant_heads_cpu.md
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from replab.edge.head_exec import HeadExecutor, compare_with_single, default_backends
from replab.edge.heads import best_single, schedule_heads

TARGET_CPU, TARGET_CUDA = 1.0, 1.3


def machine() -> str:
    card = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    cores = len(__import__("os").sched_getaffinity(0))
    return f"{platform.machine()}, {cores} cores{card}, torch {torch.__version__}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--profile-repeats", type=int, default=5)
    p.add_argument("--no-cuda", action="store_true")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    specs = default_backends(use_cuda=False if a.no_cuda else None)
    cuda = any(s.device != "cpu" for s in specs)
    where = machine()
    with HeadExecutor(specs, a.heads, a.batch, a.seq_len, a.head_dim) as ex:
        print("measuring per-head latency tables ...", flush=True)
        profile = ex.measure_profile("here", f"measured on {where}", repeats=a.profile_repeats)
        sched = schedule_heads(profile)
        print(f"schedule {sched.heads} (predicted {sched.predicted_ms:.2f} ms)", flush=True)
        result = compare_with_single(ex, sched, rounds=a.rounds, iters=a.iters)
    target = TARGET_CUDA if cuda else TARGET_CPU
    met = result["speedup"] >= target
    single = best_single(profile)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"machine": where, "shape": profile.model_dump(exclude={"backends"}), "profile": profile.model_dump()}
    record |= {"result": result, "target": target, "met": met}
    out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    lines = [
        f"# Confidant head scheduler, measured ({where})",
        "",
        f"Attention of {a.heads} heads x {a.head_dim} dims, batch {a.batch}, sequence {a.seq_len}, causal, fp32; "
        f"{a.rounds} rounds of {a.iters} runs per arm, the arms' order shuffled per round.",
        "",
        "| arm | heads | predicted ms | measured ms (median of rounds) |",
        "| --- | --- | ---: | ---: |",
        f"| schedule | {result['schedule']} | {result['predicted_ms']:.2f} | {result['schedule_ms']:.2f} |",
    ]
    for b in profile.backends:
        lines.append(
            f"| {b.name} alone ({b.device}, cores {b.cores[0]}-{b.cores[-1]}) | {a.heads} | "
            f"{b.cost_ms(a.heads):.2f} | {result['single_ms'][b.name]:.2f} |"
        )
    lines += [
        "",
        (
            f"The schedule puts every head on {result['same_as']}: it is that arm (timed once). "
            if result["same_as"]
            else ""
        )
        + f"Best single backend measured: {result['best_single']} (predicted: {list(single.heads)[0]}). "
        f"Speedup {result['speedup']:.2f}x (rounds {result['speedup_min']:.2f}-{result['speedup_max']:.2f}), "
        f"target >= {target} ({'CPU + CUDA' if cuda else 'CPU pools'}): **{'MET' if met else 'MISSED'}**. "
        f"Largest deviation from the unsplit attention: {result['max_abs_deviation']:.1e}.",
        "",
        f"Predicted from the tables: schedule {sched.predicted_ms:.2f} ms against {single.predicted_ms:.2f} ms for "
        f"{list(single.heads)[0]} alone, a predicted speedup of {single.predicted_ms / sched.predicted_ms:.2f}x."
        + (f" CUDA copies from page-locked memory: {result['pinned']}." if cuda else ""),
    ]
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
