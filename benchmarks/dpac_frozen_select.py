"""Choose the DPAC-on-frozen-features settings on selection seeds, before any reported run.

For each frozen feature set (MiniLM embeddings of WordNet glosses; a SimCLR-pretrained digits CNN) and each view
type, every head configuration in the grid below is trained on the selection seeds (``pac.frozen.selection_seeds``,
100-102; WordNet glosses drawn with seed 100, an independent draw that overlaps the reported one; the same 1,797
digits, with the encoder pretrained with seed 100), beside the strongest k-means on the same features.
Every configuration tried is written to the output table; the best per (features, views), by mean head ACC, is
printed as the ``params.yaml`` block to copy into ``pac.frozen.settings``.

    python benchmarks/dpac_frozen_select.py --out benchmarks/results/dpac_frozen_selection.md
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import sys
import time
from pathlib import Path

DATA_SEED = 100
GRID = {
    "views": ["noise", "neighbours"],
    "lr": [1e-3, 3e-4],
    "noise": [0.1, 0.3],
}
FIXED = {
    "dropout": 0.1,
    "n_neighbours": 10,
    "target_features": "frozen",
    "hidden_dim": 512,
    "warmup_epochs": 0,
    "epochs": 150,
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("data"))
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--out")
    args = p.parse_args()
    import yaml

    # The encoder's settings and the selection seeds come from params.yaml (read raw: its settings list is what
    # this script fills); the laptop profile's SimCLR epochs.
    pac = yaml.safe_load(args.params.read_text())["pac"]
    seeds = pac["frozen"]["selection_seeds"]
    strength, simclr_epochs = pac["frozen"]["simclr_augment_strength"], pac["scale"]["laptop"]["simclr_epochs"]

    from replab.clustering import datasets as cds
    from replab.clustering.frozen import KMEANS, compare_on_features, setting_config, simclr_digits_features

    started = time.perf_counter()
    laptop = pac["scale"]["laptop"]
    wordnet = cds.load(
        "wordnet_minilm",
        args.data,
        seed=DATA_SEED,
        wordnet_classes=pac["wordnet_classes"],
        wordnet_per_class=laptop["wordnet_per_class"],
    )
    features = {"wordnet_minilm": wordnet}
    X_digits, y_digits = cds.load("digits", args.data)
    digits_features, _, _ = simclr_digits_features(X_digits, simclr_epochs, strength, DATA_SEED)
    features["digits_simclr"] = (digits_features, y_digits)
    rows = []
    for name, (x, y) in features.items():
        for values in itertools.product(*GRID.values()):
            setting = {"name": "", "features": name, **dict(zip(GRID, values)), **FIXED}
            config = setting_config(setting, n_clusters=10, m=1.03, temperature=0.5, batch_size=256)
            results, histories = compare_on_features(x, y, config, seeds, progress=False)
            by_method = {}
            for r in results:
                by_method.setdefault(r["method"], []).append(r["acc"])
            head = by_method["DPAC head"]
            # The strongest k-means (on the features as given, standardised or L2-normalised) is the baseline.
            km = max((by_method[m] for m in KMEANS), key=statistics.mean)
            used = min(h.clusters_used[-1] for h in histories.values())
            rows.append({**setting, "head": head, "kmeans": km, "clusters_used_min": used})
            print(
                f"{name} {dict(zip(GRID, values))}: head {statistics.mean(head):.1f}, "
                f"k-means {statistics.mean(km):.1f}",
                file=sys.stderr,
                flush=True,
            )
    lines = [
        f"# DPAC on frozen features: settings tried on selection seeds {seeds} — "
        f"{platform.machine()}, {os.cpu_count()} cores, {(time.perf_counter() - started) / 60:.0f} min",
        "",
        f"Data drawn with seed {DATA_SEED}; digits encoder: SimCLR only, {simclr_epochs} epochs, augmentation "
        f"strength {strength}, seed {DATA_SEED}. Fixed: {FIXED}. ACC % mean ± std over the seeds.",
        "",
        "| features | views | lr | noise | DPAC head ACC | k-means ACC (same features) | gain | fewest clusters used |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    best = {}
    for r in rows:
        head, km = statistics.mean(r["head"]), statistics.mean(r["kmeans"])
        lines.append(
            f"| {r['features']} | {r['views']} | {r['lr']:g} | {r['noise']:g} "
            f"| {head:.1f} ± {statistics.stdev(r['head']):.1f} | {km:.1f} ± {statistics.stdev(r['kmeans']):.1f} "
            f"| {head - km:+.1f} | {r['clusters_used_min']} |"
        )
        key = (r["features"], r["views"])
        if key not in best or head > statistics.mean(best[key]["head"]):
            best[key] = r
    lines += ["", "Chosen (best mean head ACC per features and views), as `pac.frozen.settings`:", "", "```yaml"]
    for (name, views), r in best.items():
        short = {"wordnet_minilm": "wordnet", "digits_simclr": "digits"}[name]
        keys = ["features", "views", "noise", "dropout", "n_neighbours", "target_features", "hidden_dim"]
        keys += ["warmup_epochs", "epochs", "lr"]
        body = ", ".join(f"{k}: {r[k]}" for k in keys)
        lines.append(f"- {{name: {short}-{views}, {body}}}")
    lines.append("```")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
