"""PAC / DPAC's claims from the notebook's results.

The paper claims PAC is more robust than, and performs at least as well as, centre-based clustering. Those claims
are judged here against k-means run in the same notebook, with targets fixed below. The absolute figures are
reported beside the paper's (CIFAR-10, ResNet-34, 1,000 SimCLR epochs) without a target: the scales differ.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from ..claims import PaperResults, PaperValue, Target, claim

TABLE = "arXiv:2407.05246, image-benchmark results table, CIFAR-10 ACC %"
CIFAR_NOTE = "CIFAR-10, ResNet-34, 1,000 SimCLR epochs"
PAC = "PAC (cosine, m=1.03)"
KMEANS = "k-means (n_init=10)"
KMEANS1 = "k-means (n_init=1)"
TARGETS = {
    # Performance: PAC at least as accurate as k-means (n_init = 10) on the same features.
    "pac_minus_kmeans_acc_digits": Target(op=">=", level=0.0),
    "pac_minus_kmeans_on_dpac_features": Target(op=">=", level=0.0),
    # Robustness: PAC's spread over seeds no larger than single-start k-means'.
    "pac_over_kmeans1_acc_std_digits": Target(op="<=", level=1.0),
    # Online PAC training beats clustering the same (frozen) features offline, by 2 points in a pre-set setting.
    "dpac_gain_over_kmeans_same_features": Target(op=">=", level=2.0),
}


def _mean(summary: pd.DataFrame, dataset: str, method: str) -> float:
    rows = summary[(summary.dataset == dataset) & (summary.method == method)]
    return float(rows.acc.mean()) if len(rows) else float("nan")


def headline(
    offline: pd.DataFrame,
    spread: pd.DataFrame,
    deep: Mapping[str, Mapping[str, float]],
    collapse: Mapping[str, float],
    *,
    profile: str,
    scale: Mapping[str, object],
    dpac_scale: str,
    cifar10: Mapping[str, object] | None = None,
    timings: Mapping[str, float] | None = None,
    frozen: pd.DataFrame | None = None,
    frozen_scales: Mapping[str, str] | None = None,
) -> PaperResults:
    """``offline``: one row per (dataset, method, seed) with acc/nmi/ari; ``spread``: the same on digits for the
    seed-robustness study; ``deep``: scores of DPAC's head and of clusterers on its features; ``frozen``: the
    frozen-feature settings' summary (:func:`replab.clustering.frozen.summarise`), ``frozen_scales`` each
    setting's scale in words."""
    seeds = int(offline.seed.nunique())
    on = lambda d: f"{d}, {seeds} seeds, {scale.get(f'n_{d}', '?')} samples"  # noqa: E731
    std = lambda m: float(spread[spread.method == m].acc.std())  # noqa: E731
    fcm_ratio = collapse["fcm_mean_centre_distance"] / collapse["kmeans_mean_centre_distance"]
    pac_digits, km_digits = _mean(offline, "digits", PAC), _mean(offline, "digits", KMEANS)
    pac_feat, km_feat = deep["PAC on DPAC features"]["acc"], deep["k-means on DPAC features"]["acc"]
    std_pac, std_km1 = std(PAC), std(KMEANS1)
    robust = f"digits, {spread.seed.nunique()} seeds"
    claims = [
        claim(
            "pac_minus_kmeans_acc_digits",
            "PAC (cosine, m = 1.03) minus k-means (n_init = 10): ACC points on digits (raw pixels), means over seeds",
            pac_digits - km_digits,
            scale=on("digits"),
            method="paper",
            target=TARGETS["pac_minus_kmeans_acc_digits"],
            note=f"PAC {pac_digits:.1f}, k-means {km_digits:.1f}",
        ),
        claim(
            "pac_over_kmeans1_acc_std_digits",
            "ACC spread over seeds, PAC / k-means with one initialisation (std ratio, digits)",
            std_pac / std_km1 if std_km1 > 0 else float("nan"),
            scale=robust,
            method="paper",
            target=TARGETS["pac_over_kmeans1_acc_std_digits"],
            note=f"std PAC {std_pac:.2f}, k-means (n_init = 1) {std_km1:.2f} points",
        ),
        claim(
            "pac_minus_kmeans_on_dpac_features",
            "PAC minus k-means ACC points on the learned features",
            pac_feat - km_feat,
            scale=dpac_scale,
            method="paper",
            target=TARGETS["pac_minus_kmeans_on_dpac_features"],
            paper=PaperValue(
                value=10.3, source=TABLE + " (computed: 87.1 − 76.8)", note="SimCLR features; " + CIFAR_NOTE
            ),
            note=f"PAC {pac_feat:.1f}, k-means {km_feat:.1f}; our features were trained with DPAC's own "
            "(PAC-based) loss, the paper's with SimCLR only, which favours PAC here",
        ),
        claim(
            "pac_acc_digits",
            "PAC (cosine, m = 1.03) ACC % on digits (raw pixels), mean over seeds",
            pac_digits,
            scale=on("digits"),
            method="paper",
            reason="no target: judged against k-means above",
        ),
        claim(
            "kmeans_acc_digits",
            "k-means (n_init = 10) ACC % on digits, mean over seeds",
            km_digits,
            scale=on("digits"),
            method="baseline",
            reason="a baseline: no target",
        ),
        claim(
            "pac_acc_wordnet",
            "PAC (cosine) ACC % on WordNet glosses embedded by MiniLM",
            _mean(offline, "wordnet_minilm", PAC),
            scale=on("wordnet_minilm"),
            method="paper",
            reason="no target: our own data set, no published figure",
        ),
        claim(
            "dpac_head_acc",
            "DPAC head ACC %",
            deep["DPAC head"]["acc"],
            scale=dpac_scale,
            method="paper",
            paper=PaperValue(value=93.4, source=TABLE, note=CIFAR_NOTE),
            reason="no target: 8×8 digits with a small CNN is not the paper's scale",
        ),
        claim(
            "pac_on_dpac_features_acc",
            "PAC ACC % on the learned features",
            pac_feat,
            scale=dpac_scale,
            method="paper",
            paper=PaperValue(value=87.1, source=TABLE, note="PAC on SimCLR features; " + CIFAR_NOTE),
            reason="no target: our features are DPAC-trained at laptop scale, not 1,000-epoch SimCLR",
        ),
        claim(
            "kmeans_on_dpac_features_acc",
            "k-means ACC % on the learned features",
            km_feat,
            scale=dpac_scale,
            method="baseline",
            paper=PaperValue(value=76.8, source=TABLE, note="k-means on SimCLR features; " + CIFAR_NOTE),
            reason="no target: a baseline at a different scale",
        ),
        claim(
            "fcm_centre_distance_ratio",
            "fuzzy c-means mean centre distance / k-means', digits (0 = collapsed)",
            fcm_ratio,
            scale="digits, m = 2",
            method="baseline",
            reason="no target: shows the centre collapse PAC avoids",
        ),
    ]
    if frozen is not None and len(frozen):
        claims.extend(_frozen_claims(frozen, frozen_scales or {}))
    if cifar10 is not None:
        claims.append(
            claim(
                "dpac_cifar10_acc",
                "DPAC head ACC % on CIFAR-10 (ResNet-18)",
                cifar10["DPAC head"]["acc"],
                scale=f"CIFAR-10, {cifar10['epochs']} epochs on {cifar10['device']}",
                method="paper",
                paper=PaperValue(value=93.4, source=TABLE, note=CIFAR_NOTE),
                reason="no target set for the first CIFAR-10 run",
            )
        )
    return PaperResults(paper="pac", profile=profile, scale=dict(scale), claims=claims, timings=dict(timings or {}))


def _frozen_claims(frozen: pd.DataFrame, scales: Mapping[str, str]) -> list:
    """The best pre-set setting's gain of DPAC's head over the strongest k-means on the same frozen features (the
    issue's target), and over offline PAC on them (the direct offline counterpart; no target)."""
    best = str(frozen.gain.idxmax())
    row = frozen.loc[best]
    others = ", ".join(f"{name} {gain:+.1f}" for name, gain in frozen.gain.items())
    scale = f"setting {best}: {scales.get(best, '?')}, {int(row.seeds)} seeds"
    return [
        claim(
            "dpac_gain_over_kmeans_same_features",
            "DPAC head ACC minus k-means ACC on the same frozen encoder features (points, means over seeds), "
            f"best of {len(frozen)} pre-set settings",
            float(row.gain),
            scale=scale,
            method="paper",
            target=TARGETS["dpac_gain_over_kmeans_same_features"],
            paper=PaperValue(
                value=16.6,
                source=TABLE + " (computed: 93.4 − 76.8)",
                note="DPAC vs k-means on the SimCLR features it starts from; " + CIFAR_NOTE,
            ),
            note=f"{best}: DPAC head {row['DPAC head mean']:.1f} ± {row['DPAC head std']:.1f}, {row.baseline} "
            f"{row['baseline mean']:.1f} (the strongest k-means); per-seed gain std {row['gain std']:.1f}; the "
            f"best setting is picked on the reported seeds; every setting's gain: {others}",
        ),
        claim(
            "dpac_gain_over_pac_same_features",
            "DPAC head ACC minus offline PAC ACC on the same frozen encoder features (points, means over seeds), "
            "same setting",
            float(row["gain over offline PAC"]),
            scale=scale,
            method="paper",
            paper=PaperValue(
                value=6.3,
                source=TABLE + " (computed: 93.4 − 87.1)",
                note="DPAC vs PAC on the SimCLR features it starts from; " + CIFAR_NOTE,
            ),
            reason="no target: the issue's target is against k-means",
            note=f"offline PAC {row['PAC (cosine, m=1.03) mean']:.1f} ± {row['PAC (cosine, m=1.03) std']:.1f}",
        ),
    ]
