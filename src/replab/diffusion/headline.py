"""FaceStudio's claims: the study's figures judged against targets fixed here before any run (the issue's), with
the paper's results table (Sec. 4.2) beside them."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..claims import PaperResults, PaperValue, Target, claim
from ..measure import Machine, Spread
from .evaluate import paired_identity_bootstrap, wilson_interval
from .experiment import Arm, Study

# Fixed before the runs (the targets). The paper profile's level applies where it runs on SD 1.5.
TOP1_TARGET = {"tiny": 0.4, "laptop": 0.4, "paper": 0.8}
TARGETS = {
    "tuning_time_ratio_dreambooth": Target(op=">=", level=100.0),
    "swap_rate_ratio_masked_to_vanilla": Target(op="<=", level=0.5),
    "paste_control_wins_both": Target(op="==", level=False),
}

_T1 = "Sec. 4.2, results table (ArcFace cosine to the reference, 11 identities)"
PAPER_COS = {
    "image_guidance": PaperValue(value=0.86, source=_T1),
    "image_guidance_n": PaperValue(value=0.74, source=_T1, note="11 reference images"),
    "text_guidance": PaperValue(value=0.71, source=_T1),
    "text_guidance_n": PaperValue(value=0.61, source=_T1, note="11 reference images"),
    "no_id": PaperValue(value=0.47, source=_T1),
    "dreambooth": PaperValue(value=0.65, source=_T1, note="1k iterations"),
    "textual_inversion": PaperValue(value=0.31, source=_T1, note="3k iterations"),
}
PAPER_TUNING = {
    "dreambooth": PaperValue(value=405, source="Sec. 4.2, results table (seconds)", note="1k iterations"),
    "textual_inversion": PaperValue(value=3425, source="Sec. 4.2, results table (seconds)", note="3k iterations"),
}
PAPER_NAMES = {"dreambooth": "DreamBooth", "textual_inversion": "Textual Inversion"}
PAPER_INFERENCE = {
    "image_guidance": PaperValue(value=3.6, source="Sec. 4.2, results table (seconds; + 0.04 s per reference)"),
    "text_guidance": PaperValue(value=5.3, source="Sec. 4.2, results table (seconds; + 0.04 s per reference)"),
    "no_id": PaperValue(value=3.6, source="Sec. 4.2, results table (seconds)"),
    "dreambooth": PaperValue(value=2.8, source="Sec. 4.2, results table (seconds)"),
    "textual_inversion": PaperValue(value=2.8, source="Sec. 4.2, results table (seconds)"),
}
# Our arms are a reconstruction, not the paper's method: a scaled-down generator that differs from it (v-prediction,
# min-SNR, the identity also in the time embedding at the laptop sizes).
OURS = "reconstruction"
ROLES = {"image_guidance": OURS, "image_guidance_n": OURS, "text_guidance": OURS, "text_guidance_n": OURS}
# Below this share of people identified in the ordinary-attention scenes, the swap-rate comparison sits at its floor
# (both rates near 1) and its verdict says so. Set after run 2 (0.038 identified there) and before run 3; it only
# labels a verdict, it never changes one.
SCENE_FLOOR_PERSON_TOP1 = 0.2


def _spread(values: list[float]) -> Spread | None:
    return Spread.of(values) if len(values) > 1 else None


def _ci(arm: Arm, key: str, sampled: bool = True) -> str:
    """The interval text of an arm's figure; ``sampled=False`` for the copy-paste control (nothing generated)."""
    runs = "one base training run, one tuning run per identity" if arm.steps else "one training run"
    noise = f"sampling noise only, {runs}" if sampled else "no sampling and no training: pasted faces"
    if key == "top1" and arm.sample_correct:
        k, n, lo, hi = arm.top1_interval()
        id_lo, id_hi = arm.top1_identity_interval()
        boot = _identity_text(id_lo, id_hi)
        wilson = f"95 % Wilson interval {lo:.3f}–{hi:.3f} (samples as independent trials)"
        return f"{k} of {n} samples named right, {wilson}, {boot}; {noise}"
    if not sampled:
        return noise
    mean, lo, hi = arm.mean(key)
    return (
        f"95 % t-interval over sampling seeds {lo:.3f}–{hi:.3f} ({noise})"
        if len(arm.per_seed) > 1
        else "one sampling seed"
    )


def _subset_interval(arm: Arm, identities: int) -> str:
    keep = arm.sample_target < identities
    correct = torch.cat([c[keep] for c in arm.sample_correct])
    k, n = int(correct.sum()), len(correct)
    lo, hi = wilson_interval(k, n)
    return (
        f"{k} of {n} samples named right ({identities} identities x their styles x every seed), 95 % Wilson "
        f"interval {lo:.3f}–{hi:.3f} (samples as independent trials), "
        + _identity_text(*_bootstrap(arm.per_identity("top1", identities)))
    )


def _bootstrap(per_identity: np.ndarray) -> tuple[float, float]:
    return paired_identity_bootstrap(per_identity, np.zeros_like(per_identity))


def _identity_text(lo: float, hi: float, signed: bool = False) -> str:
    if lo == hi:
        return "every identity alike, no spread to resample over identities"
    interval = f"{lo:+.3f} to {hi:+.3f}" if signed else f"{lo:.3f}–{hi:.3f}"
    return f"95 % bootstrap over identities {interval}"


def _versus_tuned(ours: Arm, arms: dict[str, Arm], identities: int, key: str) -> str:
    """Ours minus each tuning arm on the same identities, styles and seeds: a paired bootstrap over identities."""
    mine = ours.per_identity(key, identities)
    parts = []
    for name, arm in arms.items():
        if name in ("dreambooth", "textual_inversion") and arm.sample_correct:
            theirs = arm.per_identity(key, identities)
            parts.append(
                f"minus the {arm.name} arm's {theirs.mean():.3f}: {mine.mean() - theirs.mean():+.3f}, paired: "
                + _identity_text(*paired_identity_bootstrap(mine, theirs), signed=True)
            )
    return "; ".join(parts)


def time_to_score_ratio(
    rows: list[dict], arm: str, generation_s: float, *, at: str = "reach"
) -> tuple[float, int, int]:
    """Median over tuned identities of (time to reach our score, or the whole search's tuning time where it never
    did) / our time to generate one sample; with how many identities reached it, of how many. Where an identity
    never reached it, its figure is a lower bound (its search stopped at its cap of steps).

    ``at``: ``"reach"``, the first check at or above our score (the claim's figure); ``"below"``, the last check
    still under it (the crossing's earliest possible time); ``"never"``, unreached identities counted as never
    reaching it (infinite), what the median would be with no cap."""
    mine = [r for r in rows if r["arm"] == arm]
    reached = sum(r["time_to_our_score_s"] is not None for r in mine)

    def one(r: dict) -> float:
        if r["time_to_our_score_s"] is None:
            return math.inf if at == "never" else r["searched_s"]
        return r["last_below_s"] if at == "below" else r["time_to_our_score_s"]

    return float(np.median([one(r) for r in mine])) / generation_s, reached, len(mine)


def _ratio_reason(rows: list[dict], arm: str, generation_s: float, target: Target) -> str:
    """Where the verdict rests on how the search was run rather than on the arm: the cap of steps (no cap would
    have met the target) or the checks' spacing (met at the first check above our score, missed at the last
    below it)."""
    ratio = time_to_score_ratio(rows, arm, generation_s)[0]
    uncapped = time_to_score_ratio(rows, arm, generation_s, at="never")[0]
    earliest = time_to_score_ratio(rows, arm, generation_s, at="below")[0]
    if ratio < target.level <= uncapped:
        full = np.median([r["searched_s"] for r in rows if r["arm"] == arm and r["time_to_our_score_s"] is None])
        return (
            f"identities that never reached our score stopped at the tuning cap after {full:.1f} s (median), "
            f"under {target.level:g} generations' time, and they decide the median: raise reach_steps for a "
            "verdict that can be met"
        )
    if earliest < target.level <= ratio:
        return (
            f"met at the first check at or above our score, but the crossing may lie earlier: from the last check "
            f"below it the ratio is {earliest:.1f}, under {target.level:g}"
        )
    return ""


SETUP_CLAIMS = {  # study.setup's numbers, each a claim in metrics/idsynth.json: the scale a reader needs
    "heldout_identities": "held-out identities scored",
    "train_identities": "training identities",
    "image_px": "image side in pixels",
    "generator_batch": "generator training batch",
    "sampling_steps": "Euler-ancestral sampling steps",
    "sampling_seeds": "sampling seeds",
    "identity_guidance": "identity guidance scale",
    "tuned_identities": "held-out identities the tuning arms ran on",
    "tune_steps": "tuning steps before the tuning arms are scored",
    "reach_steps": "the DreamBooth-like arm's most tuning steps while it searches for our score",
}


def headline(study: Study, *, machine: Machine, timings: dict | None = None) -> PaperResults:
    s = study
    scale = s.setup
    text = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in scale.items())
    claims = []
    for key, arm in s.arms.items():
        sampled = key != "paste_control"
        seeds = len(arm.per_seed)
        where = f"{arm.identities or s.n_ids} held-out identities, " + (
            f"{seeds} sampling seed{'s' if seeds > 1 else ''}" if sampled else "one pasted reference each"
        )
        refs = f"{arm.refs} reference(s)" if arm.refs else "no identity input"
        subset = f" (the first {arm.identities} identities)" if arm.identities != s.n_ids else ""
        subset += f", tuned {arm.steps} steps" if arm.steps else ""
        role = ROLES.get(key, "baseline")
        top1 = [r["top1"] for r in arm.per_seed]
        claims.append(
            claim(
                f"top1_{key}",
                f"{arm.name}: evaluator top-1 identification among {s.n_ids} held-out identities, {refs}{subset}; "
                f"mean over {where}",
                float(np.mean(top1)),
                scale=text,
                method=role,
                target=(">=", TOP1_TARGET[s.profile]) if key == "image_guidance" else None,
                spread=_spread(top1),
                note=f"chance {1 / s.n_ids:.3f}; {_ci(arm, 'top1', sampled)}",
            )
        )
        cos = [r["cos"] for r in arm.per_seed]
        claims.append(
            claim(
                f"cos_{key}",
                f"{arm.name}: independent evaluator's cosine to the identity's gallery prototype, {refs}{subset}",
                float(np.mean(cos)),
                scale=text,
                method=role,
                paper=PAPER_COS.get(key),
                spread=_spread(cos),
                note="ours: a separately trained evaluator against other images of the identity; the paper: the "
                "conditioning ArcFace against the reference itself. " + _ci(arm, "cos", sampled),
            )
        )
        style = [r["style"] for r in arm.per_seed]
        claims.append(
            claim(
                f"style_{key}",
                f"{arm.name}: style adherence (attribute classifier agrees on background, pattern, texture, palette)",
                float(np.mean(style)),
                scale=text,
                method=role,
                spread=_spread(style),
            )
        )
        if arm.inference is not None:
            claims.append(
                claim(
                    f"inference_s_{key}",
                    f"{arm.name}: seconds to generate one sample, its inputs' encoding included ("
                    f"{len(arm.inference.values)} repeats interleaved with the other arms, median)",
                    arm.inference.median,
                    unit="s",
                    scale=text,
                    method=role,
                    paper=PAPER_INFERENCE.get(key),
                    timing=True,
                    machine=machine,
                    spread=arm.inference,
                )
            )
    ours = s.arms["image_guidance"]
    tuned_ids = min((a.identities for k, a in s.arms.items() if k in ("dreambooth", "textual_inversion")), default=0)
    if tuned_ids and tuned_ids < s.n_ids and ours.sample_correct:
        claims.append(
            claim(
                "top1_image_guidance_tuned_ids",
                f"{ours.name}: evaluator top-1 on the first {tuned_ids} held-out identities only (the tuning arms' "
                "subset, for a like-for-like comparison with them); every sampling seed",
                ours.top1_on(tuned_ids),
                scale=text,
                method=OURS,
                note=f"chance {1 / s.n_ids:.3f} (identified among all {s.n_ids}); {_subset_interval(ours, tuned_ids)}"
                f"; {_versus_tuned(ours, s.arms, tuned_ids, 'top1')}",
            )
        )
        claims.append(
            claim(
                "cos_image_guidance_tuned_ids",
                f"{ours.name}: independent evaluator's cosine on the first {tuned_ids} held-out identities only (the "
                "tuning arms' subset); every sampling seed",
                float(ours.per_identity("cos", tuned_ids).mean()),
                scale=text,
                method=OURS,
                note=_identity_text(*_bootstrap(ours.per_identity("cos", tuned_ids)))
                + "; "
                + _versus_tuned(ours, s.arms, tuned_ids, "cos"),
            )
        )
    if ours.per_seed and "top1_style_source" in ours.per_seed[0]:
        claims.append(
            claim(
                "top1_style_source_image_guidance",
                f"{ours.name}: how often the evaluator names the style image's own identity (its face masked) "
                "instead: identity leaking through the style input (the box's size and place stay visible)",
                float(np.mean([r["top1_style_source"] for r in ours.per_seed])),
                scale=text,
                method=OURS,
                note=f"chance {1 / s.n_ids:.3f}",
            )
        )
    paste = s.arms["paste_control"]
    wins = bool(paste.mean("top1")[0] > ours.mean("top1")[0] and paste.mean("style")[0] > ours.mean("style")[0])
    claims.append(
        claim(
            "paste_control_wins_both",
            "the copy-paste control beats image guidance on both identity (top-1) and style adherence (if so, "
            "the scores reward copying the reference)",
            wins,
            scale=text,
            method="baseline",
            target=TARGETS["paste_control_wins_both"],
        )
    )
    for key in ("image_guidance", "no_id", "text_guidance", "ip_adapter"):
        if key in s.arms and s.arms[key].features:
            fd = _frechet(s, s.arms[key])
            claims.append(
                claim(
                    f"frechet_{key}",
                    f"{s.arms[key].name}: Fréchet distance to the held-out gallery faces in the evaluator's space",
                    fd,
                    scale=text,
                    method=ROLES.get(key, "baseline"),
                    note=f"two halves of the real gallery, same sample size: {s.frechet_real:.3g}"
                    + _frechet_caveat(s.protocol.gallery_features.shape),
                )
            )
    for arm_key in ("dreambooth", "textual_inversion"):
        if arm_key not in s.arms:
            continue
        ratio, reached, total = time_to_score_ratio(s.tuning, arm_key, s.generation_s.median)
        goal = TARGETS.get(f"tuning_time_ratio_{arm_key}")
        why = _ratio_reason(s.tuning, arm_key, s.generation_s.median, goal) if goal else ""
        mine = [r for r in s.tuning if r["arm"] == arm_key]
        cap, scored = max(r["search_steps"] for r in mine), mine[0]["scored_steps"]
        earliest = time_to_score_ratio(s.tuning, arm_key, s.generation_s.median, at="below")[0]
        bound = (
            " The median falls on identities that never reached it: a lower bound."
            if math.isinf(time_to_score_ratio(s.tuning, arm_key, s.generation_s.median, at="never")[0])
            else ""
        )
        claims.append(
            claim(
                f"tuning_time_ratio_{arm_key}",
                f"{s.arms[arm_key].name} arm's time to reach our identity score (cosine, per identity) / our time to "
                "generate one sample; median over tuned identities",
                ratio,
                scale=text,
                method="baseline",
                target=goal,
                timing=True,
                machine=machine,
                reason=why,
                note=f"{reached} of {total} identities reached our score within {cap} steps (checked on the mean "
                "cosine of every sampling seed)"
                + ("; the others count the tuning time of all those steps, a lower bound." if reached < total else ".")
                + f"{bound} From the last check below our score instead: {earliest:.1f}. The paper (Sec. 4.2): "
                f"{PAPER_NAMES[arm_key]} {PAPER_TUNING[arm_key].value:g} s tuning, FaceStudio 3.6 s inference.",
            )
        )
        claims.append(
            claim(
                f"tuning_s_{arm_key}",
                f"{s.arms[arm_key].name} arm's tuning time per identity to the arm as scored, {scored} steps (median)",
                s.arms[arm_key].tuning_s,
                unit="s",
                scale=text,
                method="baseline",
                paper=PAPER_TUNING[arm_key],
                timing=True,
                machine=machine,
            )
        )
    if s.scenes:
        masked, vanilla = s.scenes["masked"], s.scenes["vanilla"]
        for name, sc in (("masked", masked), ("vanilla", vanilla)):
            claims.append(
                claim(
                    f"swap_rate_{name}",
                    f"two-person scenes, {'masked' if name == 'masked' else 'ordinary'} cross-attention: share of "
                    "scenes where not both people are identified (among every held-out identity) in their own boxes",
                    sc["swap_rate"],
                    scale=text,
                    method=OURS if name == "masked" else "baseline",
                    note=f"{sc['scenes']} scenes, one sampling seed: 95 % Wilson interval "
                    + "{:.3f}–{:.3f}".format(*wilson_interval(round(sc["swap_rate"] * sc["scenes"]), sc["scenes"]))
                    + f"; within the pair only: {sc['swap_rate_within_pair']:.3f}; strict swaps (each closer to the "
                    f"other): {sc['strict_swaps']:.3f}; people identified: {sc['person_top1']:.3f}",
                )
            )
        ratio = masked["swap_rate"] / vanilla["swap_rate"] if vanilla["swap_rate"] > 0 else math.nan
        floor = vanilla["person_top1"] < SCENE_FLOOR_PERSON_TOP1
        claims.append(
            claim(
                "swap_rate_ratio_masked_to_vanilla",
                "swap rate with masked attention / without",
                ratio,
                scale=text,
                method=OURS,
                target=TARGETS["swap_rate_ratio_masked_to_vanilla"],
                reason="the vanilla arm had no swaps to halve"
                if not math.isfinite(ratio)
                else f"at its floor: ordinary attention identifies {vanilla['person_top1']:.3f} of the people (under "
                f"{SCENE_FLOOR_PERSON_TOP1}), so both rates sit near 1 and the ratio cannot show a difference"
                if floor
                else "",
            )
        )
    claims.append(
        claim(
            "top1_real_images",
            "the evaluator's top-1 on real held-out images (the style images, unmasked, as their own identity): the "
            "ceiling a generated face can be scored at",
            s.real_top1,
            scale=text,
            method="stand-in",
            note=f"chance {1 / s.n_ids:.3f}",
        )
    )
    claims += [
        *[claim(key, metric, scale[key], scale=text, method=OURS) for key, metric in SETUP_CLAIMS.items()],
        claim("references_n", "N, the references of the N-reference arms", s.n_refs, scale=text, method=OURS),
        claim("generator_steps", "generator training steps", len(s.losses["generator"]), scale=text, method=OURS),
        claim(
            "generator_parameters",
            "the generator's trained parameters (condition module and UNet)",
            s.generator_params,
            scale=text,
            method=OURS,
        ),
    ]
    return PaperResults(paper="idsynth", profile=s.profile, scale=dict(scale), claims=claims, timings=timings or {})


def _frechet_caveat(shape: tuple[int, int]) -> str:
    """Covariances from fewer than ten samples per dimension are poorly conditioned: say so where it applies."""
    n, dim = shape[0] // 2, shape[1]
    if n >= 10 * dim:
        return ""
    return (
        f"; {dim}-dimensional features from {n} samples a side give poorly conditioned covariances, so both "
        "figures carry a large small-sample bias: compare them with each other, not with other work"
    )


def _frechet(s: Study, arm: Arm) -> float:
    """The arm's samples against one half of the gallery, as many of each as the real reference compares (half
    against half): the distance's bias depends on the sample size, so the two figures are comparable."""
    import torch

    from .evaluate import frechet_distance

    real = s.protocol.gallery_features[1::2]
    generated = torch.cat(arm.features)
    n = min(len(real), len(generated))
    keep = torch.linspace(0, len(generated) - 1, n).round().long()
    return frechet_distance(generated[keep], real[:n])
