"""The FaceStudio study the notebook runs: train the frozen parts and the generator, then generate and score every
arm on the held-out identities (the arms of the paper's results table, Sec. 4.2, with 1 and N references, the
copy-paste control, the tuning arms on a subset, two-person scenes with and without masked attention, the alpha and
beta sweeps)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data import portraits
from ..measure import Spread
from ..progress import say, tqdm
from . import evaluate as ev
from .baselines import ip_conditioning, set_adapter_scale, train_ip_adapter, tune_on_references
from .checkpoints import Checkpoints
from .condition import mix_identities
from .generator import Conditioning, Generator, image_conditioning, sample, text_conditioning
from .masked_attention import MaskedIdentityAttnProcessor
from .paper_models import require_paper_models
from .params import IdsynthParams, IdsynthScale
from .stable_diffusion import load_generator
from .training import (
    GENERATORS,
    SEEDS,
    Encoders,
    PortraitTensors,
    mask_faces,
    resume_folder,
    save_modules,
    train_encoders,
    train_generator,
    train_paper_encoders,
)

CHUNK = 100  # samples per sampling batch
GRID_IDS = 6  # identities shown in the image grids


def stage_params(namespace: dict) -> tuple[IdsynthParams, IdsynthScale, dict]:
    """The notebook's flat papermill parameters back as the validated section, its scale, and the flat dict."""
    scale_keys = set(IdsynthScale.model_fields)
    flat = {k: namespace[k] for k in ("profile", "seed", *IdsynthParams.model_fields, *scale_keys) if k != "scale"}
    scale = IdsynthScale(**{k: flat[k] for k in scale_keys})
    body = {k: flat[k] for k in IdsynthParams.model_fields if k != "scale"}
    params = IdsynthParams(**body, scale={prof: scale for prof in ("tiny", "laptop", "paper")})
    return params, scale, flat


@dataclass
class Arm:
    """One arm's samples, scored per sampling seed."""

    name: str
    refs: int  # references per identity (1 or N); 0 for arms without identity input
    per_seed: list[dict[str, float]] = field(default_factory=list)
    grid: torch.Tensor | None = None  # the first GRID_IDS samples of the first seed
    features: list[torch.Tensor] = field(default_factory=list)  # evaluator features of every sample
    tuning_s: float = 0.0  # per identity, for the tuning arms
    inference: Spread | None = None  # seconds to generate one sample
    sample_cos: list[torch.Tensor] = field(default_factory=list)  # per seed: each sample's cosine to its target
    sample_correct: list[torch.Tensor] = field(default_factory=list)  # per seed: each sample named right or not
    sample_target: torch.Tensor | None = None  # each sample's target identity (the same for every seed)
    identities: int = 0  # how many held-out identities it ran on
    steps: int = 0  # the tuning arms: tuning steps before they were scored

    def mean(self, key: str) -> tuple[float, float, float]:
        return ev.mean_and_interval([s[key] for s in self.per_seed])

    def top1_interval(self) -> tuple[int, int, float, float]:
        """Top-1 over every sample of every seed: (named right, samples, Wilson 95 % interval). The interval counts
        the samples as independent trials: it covers sampling noise, not a second training run."""
        correct = torch.cat(self.sample_correct)
        k, n = int(correct.sum()), len(correct)
        return (k, n, *ev.wilson_interval(k, n))

    def top1_identity_interval(self) -> tuple[float, float]:
        """Top-1's 95 % interval over identities: a bootstrap that resamples held-out identities with all their
        samples (every seed), wider than the Wilson interval where identities differ."""
        target = self.sample_target.repeat(len(self.sample_correct))
        return ev.identity_bootstrap_interval(torch.cat(self.sample_correct), target)

    def top1_on(self, identities: int) -> float:
        """Top-1 over the samples of the first ``identities`` held-out identities (every seed)."""
        keep = self.sample_target < identities
        return float(torch.cat([c[keep] for c in self.sample_correct]).float().mean())

    def per_identity(self, key: str, identities: int) -> np.ndarray:
        """Each of the first ``identities`` held-out identities' mean over its samples of every seed: ``key`` is
        ``"top1"`` (named right) or ``"cos"``; the unit a bootstrap over identities resamples."""
        values = torch.stack([c.float() for c in (self.sample_correct if key == "top1" else self.sample_cos)])
        return np.array([float(values[:, self.sample_target == k].mean()) for k in range(identities)])


@dataclass
class Study:
    profile: str
    n_train: int  # training identities
    n_ids: int  # held-out identities
    n_refs: int
    losses: dict[str, list[float]]
    arms: dict[str, Arm]
    tuning: list[dict]  # per identity and tuning arm: time to reach our score, full time, final score
    scenes: dict[str, dict]  # masked / vanilla: swap rates per seed and a grid
    alpha_sweep: list[dict]
    beta_sweep: list[dict]
    protocol: ev.Protocol
    timings: dict[str, float]
    generation_s: Spread  # our (image guidance, 1 reference) time to generate one sample, encoding included
    generator_params: int  # trainable parameters of the generator (condition module and UNet)
    real_top1: float  # the evaluator's top-1 on the real style images (of their own identity): its ceiling
    frechet_real: float  # gallery vs gallery split: the distance two real samples have
    setup: dict[str, int | float | str] = field(default_factory=dict)  # the scale, from :func:`study_setup`


def study_setup(params: IdsynthParams, s: IdsynthScale, profile: str, train_ids: int, heldout_ids: int, px: int):
    """The scale a study ran at, under fixed keys: the claims' scale text and the scale's claims."""
    return {
        "profile": profile,
        "generator": s.generator,
        "image_px": px,
        "train_identities": train_ids,
        "heldout_identities": heldout_ids,
        "generator_steps": s.generator_steps,
        "generator_batch": s.generator_batch,
        "sampling_steps": params.sample_steps,
        "sampling_seeds": params.sampling_seeds,
        "identity_guidance": params.identity_guidance,
        "tuned_identities": min(params.tuned_identities, heldout_ids),
        "tune_steps": s.tune_steps,
        "reach_steps": s.reach_steps,
    }


def _generate(
    gen: Generator,
    conditions: Callable[[slice], tuple[Conditioning, Conditioning | None]],
    n: int,
    *,
    guidance: float,
    steps: int,
    seed: int,
) -> torch.Tensor:
    out = []
    for k, lo in enumerate(range(0, n, CHUNK)):
        cond, uncond = conditions(slice(lo, min(n, lo + CHUNK)))
        out.append(sample(gen, cond, uncond, guidance=guidance, steps=steps, seed=seed * 100_003 + k))
    return torch.cat(out)


def time_interleaved(runs: list[Callable[[], object]], repeats: int = 5) -> list[Spread]:
    """Each run's wall time, ``repeats`` rounds with the runs interleaved (after one untimed warm-up round), so a
    slow spell of a shared machine falls on every arm alike."""
    for run in runs:
        run()
    values: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for k, run in enumerate(runs):
            began = time.perf_counter()
            run()
            values[k].append(time.perf_counter() - began)
    return [Spread.of(v) for v in values]


class Study_:
    """Holds what every arm shares while the study runs (kept private: the notebook sees :class:`Study`)."""

    def __init__(self, gen: Generator, enc: Encoders, proto: ev.Protocol, params: IdsynthParams, seeds: list[int]):
        self.gen, self.enc, self.proto, self.p, self.seeds = gen, enc, proto, params, seeds
        n_ids = len(proto.ids)
        flat_refs = proto.refs.flatten(0, 1)
        e_refs = enc.identity_embeddings(flat_refs, proto.ref_boxes.flatten(0, 1)).view(n_ids, proto.n_refs, -1)
        self.e_f1 = e_refs[:, 0]
        # N references: the paper's sum with beta = 1/N, rescaled to unit norm (the paper leaves how N references
        # combine open; the generator only ever saw unit-norm embeddings, and a mean of N of them is shorter).
        self.e_fn = F.normalize(mix_identities(e_refs, [1 / proto.n_refs] * proto.n_refs), dim=-1)
        self.e_h = enc.style_embeddings(proto.styles, proto.style_boxes)
        self.e_t = enc.text_embeddings(proto.captions)
        self.timers: list[tuple[Arm, Callable[[], object]]] = []  # timed together at the end: time_arms

    def encode_request(self, refs: int, text: bool = False) -> None:
        """What one request costs before sampling (the study embeds everything once, up front): ``refs``
        reference faces, then the style image or, for text guidance, the caption through the prior."""
        p = self.proto
        with torch.no_grad():
            if refs:
                self.enc.identity_embeddings(p.refs[0, :refs], p.ref_boxes[0, :refs])
            if text:
                self.enc.text_embeddings(p.captions[:1])
            else:
                self.enc.style_embeddings(p.styles[:1], p.style_boxes[:1])

    def time_arms(self) -> None:
        """Every arm's seconds per sample, encoding included, the arms interleaved."""
        for (arm, _), spread in zip(self.timers, time_interleaved([run for _, run in self.timers]), strict=True):
            arm.inference = spread

    def score(self, arm: Arm, images: torch.Tensor, which: torch.Tensor | None = None) -> None:
        which = torch.arange(len(images)) if which is None else which
        p = self.proto
        idn = ev.identity_scores(self.enc.evaluator, p.gallery, images, p.style_boxes[which], p.target[which])
        sty = ev.style_scores(self.enc.attributes, images, p.style_codes[which])
        src = ev.identity_scores(self.enc.evaluator, p.gallery, images, p.style_boxes[which], p.source[which])
        arm.per_seed.append(
            {
                "top1": idn["correct"].float().mean().item(),
                "cos": idn["cos"].mean().item(),
                "style": sty["style"].mean().item(),
                "expression": sty["expression"].mean().item(),
                "top1_style_source": src["correct"].float().mean().item(),
            }
        )
        arm.sample_cos.append(idn["cos"])
        arm.sample_correct.append(idn["correct"])
        arm.sample_target = p.target[which]
        arm.features.append(ev._features(self.enc.evaluator, images, p.style_boxes[which]))
        if arm.grid is None:  # each identity's first style image (samples come identity-major)
            arm.grid = images[:: len(p.target) // len(p.ids)][:GRID_IDS]

    def run(
        self, name: str, refs: int, conditions, guidance: float, gen: Generator | None = None, text: bool = False
    ) -> Arm:
        gen = gen or self.gen
        arm = Arm(name, refs, identities=len(self.proto.ids))
        n = len(self.proto.target)
        for seed in tqdm(self.seeds, desc=name, unit="seed"):
            self.score(arm, _generate(gen, conditions, n, guidance=guidance, steps=self.p.sample_steps, seed=seed))

        def one_request():
            self.encode_request(refs, text)
            return sample(gen, *conditions(slice(0, 1)), guidance=guidance, steps=self.p.sample_steps, seed=0)

        self.timers.append((arm, one_request))
        return arm

    def identity(self, refs: int, sl: slice) -> torch.Tensor:
        return (self.e_f1 if refs == 1 else self.e_fn)[self.proto.target[sl]]

    def image_arm(self, refs: int) -> Callable:
        def conditions(sl):
            f = self.identity(refs, sl)
            return image_conditioning(self.gen, self.e_h[sl], f), image_conditioning(self.gen, self.e_h[sl], 0 * f)

        return conditions

    def text_arm(self, refs: int) -> Callable:
        def conditions(sl):
            f = self.identity(refs, sl)
            return text_conditioning(self.gen, self.e_t[sl], f), text_conditioning(self.gen, self.e_t[sl], 0 * f)

        return conditions

    def no_id(self, sl):
        f = torch.zeros_like(self.identity(1, sl))
        return image_conditioning(self.gen, self.e_h[sl], f), None

    def alpha_arm(self, alpha: float) -> Callable:
        def conditions(sl):
            f = self.identity(1, sl)
            cond = Conditioning(self.gen.condition(self.e_h[sl], self.e_t[sl], f, alpha), f)
            null = Conditioning(self.gen.condition(self.e_h[sl], self.e_t[sl], 0 * f, alpha), 0 * f)
            return cond, null

        return conditions


def load_split(data_dir: Path, profile: str) -> dict[str, PortraitTensors | portraits.Split]:
    data = portraits.load(data_dir, profile)
    out = {name: PortraitTensors.of(data.splits[name]) for name in ("train", "heldout")}
    out["heldout_scenes"] = data.splits.get("heldout_scenes")
    return out


def run_study(params: IdsynthParams, s: IdsynthScale, profile: str, seed: int, root: Path, models: Path) -> Study:
    """Everything the notebook shows. Weights go to ``models`` (the stage's outs); the generator's unfinished-run
    checkpoints to ``build/resume/`` under ``root``."""
    cache = Path(params.model_cache).expanduser()
    pretrained = s.generator == "sd15"
    if pretrained:
        require_paper_models(cache)
    device = "cuda" if pretrained and torch.cuda.is_available() else "cpu"
    if pretrained and device == "cpu":
        say("no CUDA device: fine-tuning Stable Diffusion 1.5 on the CPU will take very long")
    timings: dict[str, float] = {}
    began = time.perf_counter()
    data = load_split(Path(root) / "data", profile)
    train, heldout = data["train"], data["heldout"]
    torch.manual_seed(seed)
    enc = train_paper_encoders(train, s, seed, cache, device) if pretrained else train_encoders(train, s, seed)
    save_modules(Path(models), enc.modules())
    timings["encoders"] = time.perf_counter() - began

    began = time.perf_counter()
    e_h = enc.style_embeddings(train.images, train.boxes)
    e_f = enc.identity_embeddings(train.images, train.boxes)
    config = GENERATORS[s.generator]
    torch.manual_seed(seed + SEEDS["generator"])
    gen = load_generator(cache, config, device) if pretrained else Generator(config)
    shaping = {
        "profile": profile,
        "seed": seed,
        "scale": s.model_dump(),
        "generator": config.as_dict(),
        **{k: getattr(params, k) for k in ("p_style", "p_face")},
    }
    checkpoints = Checkpoints(resume_folder(root, shaping), gen, every=s.checkpoint_every)
    if checkpoints.latest() is not None:
        say(f"resuming the generator from {checkpoints.latest().name}")
    losses = dict(enc.losses)
    losses["generator"] = train_generator(
        gen,
        train.images,
        e_h,
        e_f,
        steps=s.generator_steps,
        batch=s.generator_batch,
        lr=s.lr,
        seed=seed + SEEDS["generator"],
        p_style=params.p_style,
        p_face=params.p_face,
        checkpoints=checkpoints,
    )
    save_modules(Path(models), {"generator": gen})
    checkpoints.clear()
    timings["generator"] = time.perf_counter() - began

    began = time.perf_counter()
    proto = ev.build_protocol(heldout, enc.evaluator, s.styles_per_identity, params.references)
    seeds = [seed + 1000 + k for k in range(params.sampling_seeds)]
    st = Study_(gen, enc, proto, params, seeds)
    g = params.identity_guidance
    arms: dict[str, Arm] = {}
    arms["image_guidance"] = st.run("image guidance", 1, st.image_arm(1), g)
    arms["image_guidance_n"] = st.run(
        f"image guidance, {proto.n_refs} refs", proto.n_refs, st.image_arm(proto.n_refs), g
    )
    arms["text_guidance"] = st.run("text guidance", 1, st.text_arm(1), g, text=True)
    arms["text_guidance_n"] = st.run(
        f"text guidance, {proto.n_refs} refs", proto.n_refs, st.text_arm(proto.n_refs), g, text=True
    )
    arms["no_id"] = st.run("no ID input", 0, st.no_id, 1.0)
    paste = Arm("copy-paste control", 1, identities=len(proto.ids))
    pasted = ev.paste_faces(
        proto.styles, proto.style_boxes, proto.refs[proto.target, 0], proto.ref_boxes[proto.target, 0]
    )
    st.score(paste, pasted)
    arms["paste_control"] = paste
    timings["arms"] = time.perf_counter() - began

    began = time.perf_counter()
    ip, losses["ip_adapter"] = train_ip_adapter(
        gen,
        train.images,
        e_h,
        e_f,
        tokens=params.ip_tokens,
        steps=s.ip_steps,
        batch=s.generator_batch,
        lr=s.lr,
        seed=seed + SEEDS["ip"],
        p_style=params.p_style,
        p_face=params.p_face,
    )
    set_adapter_scale(ip, 1.0)
    for refs, key in ((1, "ip_adapter"), (proto.n_refs, "ip_adapter_n")):

        def conditions(sl, refs=refs):
            f = st.identity(refs, sl)
            return ip_conditioning(ip, st.e_h[sl], f), ip_conditioning(ip, st.e_h[sl], 0 * f)

        arms[key] = st.run(f"IP-Adapter, {refs} ref(s)", refs, conditions, g, gen=ip)
    timings["ip_adapter"] = time.perf_counter() - began

    began = time.perf_counter()
    tuning = run_tuning_arms(st, arms, params, s, seed)
    timings["tuning_arms"] = time.perf_counter() - began

    began = time.perf_counter()
    st.time_arms()
    timings["inference_timing"] = time.perf_counter() - began

    began = time.perf_counter()
    scenes = run_scenes(st, data["heldout_scenes"], s.scenes, seeds[0]) if data["heldout_scenes"] is not None else {}
    timings["scenes"] = time.perf_counter() - began

    began = time.perf_counter()
    alpha_sweep = []
    for alpha in params.alphas:
        arm = Arm(f"alpha {alpha:g}", 1)
        images = _generate(
            gen, st.alpha_arm(alpha), len(proto.target), guidance=g, steps=params.sample_steps, seed=seeds[0]
        )
        st.score(arm, images)
        alpha_sweep.append({"alpha": alpha, **arm.per_seed[0], "grid": arm.grid})
    beta_sweep = run_beta_sweep(st, params.betas, seeds[0])
    timings["sweeps"] = time.perf_counter() - began

    half = len(proto.gallery_features) // 2
    real = ev.frechet_distance(proto.gallery_features[::2], proto.gallery_features[1::2]) if half > 2 else float("nan")
    n_train = len(torch.unique(train.identity))
    return Study(
        profile=profile,
        n_train=n_train,
        n_ids=len(proto.ids),
        n_refs=proto.n_refs,
        losses=losses,
        arms=arms,
        tuning=tuning,
        scenes=scenes,
        alpha_sweep=alpha_sweep,
        beta_sweep=beta_sweep,
        protocol=proto,
        timings=timings,
        generation_s=arms["image_guidance"].inference,
        generator_params=sum(p.numel() for p in gen.parameters()),
        real_top1=ev.identity_scores(enc.evaluator, proto.gallery, proto.styles, proto.style_boxes, proto.source)[
            "correct"
        ]
        .float()
        .mean()
        .item(),
        frechet_real=real,
        setup=study_setup(params, s, profile, n_train, len(proto.ids), int(proto.styles.shape[-1])),
    )


def _tuned_conditions(conditioning, e_h: torch.Tensor, guidance: float):
    return conditioning(e_h), None if guidance == 1.0 else conditioning(e_h, null=True)


def run_tuning_arms(st: Study_, arms: dict[str, Arm], params: IdsynthParams, s: IdsynthScale, seed: int) -> list[dict]:
    """DreamBooth-like and Textual-Inversion-like tuning on the first ``tuned_identities`` held-out identities,
    one reference each, scored after ``tune_steps`` steps. While an arm tunes, every ``tune_check_every`` steps its
    samples for that identity (every sampling seed) are scored, untimed, against our image-guidance arm's mean
    cosine on the same identity and styles (every seed: the mean of 3 seeds on each side, so one lucky sample does
    not decide); the tuning time of the first check at or above it is the arm's time to reach our score.

    The DreamBooth-like arm's ratio has a target, so where it has not reached our score by ``tune_steps`` it tunes
    on (checked every ``reach_check_every`` steps) until it does or ``reach_steps`` have run; its scored images are
    still those of step ``tune_steps``. Each row's ``searched_s`` is the tuning time the search ran for, of at most
    ``search_steps`` steps, and ``last_below_s`` the time of the last check still below our score (the crossing
    lies between it and ``time_to_our_score_s``)."""
    proto, ours = st.proto, arms["image_guidance"]
    k_max = min(params.tuned_identities, len(proto.ids))
    ours_cos = [torch.stack([c[proto.target == k] for c in ours.sample_cos]).mean().item() for k in range(k_max)]
    rows = []
    # Both are guided as our identity is, against the empty slot: DreamBooth's rare identity (bound to the
    # reference by its fine-tune) and Textual Inversion's optimised one.
    for mode, lr in (("dreambooth", s.dreambooth_lr), ("textual_inversion", s.inversion_lr)):
        guidance = params.identity_guidance
        arm = Arm(f"{mode.replace('_', ' ')}-like", 1, identities=k_max, steps=s.tune_steps)
        images: dict[int, list[torch.Tensor]] = {sd: [] for sd in st.seeds}
        chosen = []
        steps = s.reach_steps if mode == "dreambooth" else s.tune_steps
        for k in tqdm(range(k_max), desc=f"{mode} identities", unit="id"):
            which = torch.nonzero(proto.target == k).flatten()
            track = {"reached": None, "spent": 0.0, "below": 0.0}

            def make_callback(tuned, conditioning, which=which, k=k, track=track, guidance=guidance, steps=steps):
                conds = _tuned_conditions(conditioning, st.e_h[which], guidance)

                def mean_cos(images: list[torch.Tensor]) -> float:
                    return (
                        torch.stack(
                            [
                                ev.identity_scores(
                                    st.enc.evaluator,
                                    proto.gallery,
                                    image,
                                    proto.style_boxes[which],
                                    proto.target[which],
                                )["cos"].mean()
                                for image in images
                            ]
                        )
                        .mean()
                        .item()
                    )

                def check(step: int, spent: float) -> bool:
                    track["spent"] = spent
                    every = s.tune_check_every if step <= s.tune_steps else s.reach_check_every
                    due = track["reached"] is None and (step % every == 0 or step in (s.tune_steps, steps))
                    if not due and step != s.tune_steps:
                        return False
                    images = [
                        sample(tuned, *conds, guidance=guidance, steps=params.sample_steps, seed=sd) for sd in st.seeds
                    ]
                    if step == s.tune_steps:  # the arm as scored
                        track["tuning_s"], track["images"] = spent, images
                    if due and mean_cos(images) >= ours_cos[k]:
                        track["reached"] = spent
                    elif due:
                        track["below"] = spent  # the crossing lies after this check
                    return step >= s.tune_steps and track["reached"] is not None

                return check

            ref, box = proto.refs[k, :1], proto.ref_boxes[k, :1]
            tuned, conditioning, _ = tune_on_references(
                st.gen,
                ref,
                st.enc.style_embeddings(ref, box),
                mode=mode,
                steps=steps,
                batch=4,
                lr=lr,
                seed=seed + SEEDS["tune"] + k,
                callback=make_callback,
            )
            for sd, image in zip(st.seeds, track["images"], strict=True):
                images[sd].append(image)
            chosen.append(which)
            rows.append(
                {
                    "arm": mode,
                    "identity": k,
                    "our_cos": ours_cos[k],
                    "time_to_our_score_s": track["reached"],
                    "tuning_s": track["tuning_s"],
                    "last_below_s": track["below"],
                    "searched_s": track["spent"],
                    "scored_steps": s.tune_steps,
                    "search_steps": steps,
                }
            )
        which_all = torch.cat(chosen)
        for sd in st.seeds:
            st.score(arm, torch.cat(images[sd]), which_all)
        arm.tuning_s = float(np.median([r["tuning_s"] for r in rows if r["arm"] == mode]))
        one = _tuned_conditions(conditioning, st.e_h[:1], guidance)

        def one_request(tuned=tuned, one=one, guidance=guidance):
            st.encode_request(0)  # the identity is in the tuned weights; the style image still needs embedding
            return sample(tuned, *one, guidance=guidance, steps=params.sample_steps, seed=0)

        st.timers.append((arm, one_request))
        arms[mode] = arm
    return rows


def scene_conditioning(gen: Generator, e_h: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> Conditioning:
    """Three token groups: the identity-free context (0), then identity 1's and identity 2's (1, 2); nothing in
    the time embedding (it cannot tell people apart)."""
    zero = torch.zeros_like(left)
    context = torch.cat([gen.condition(e_h, None, f) for f in (zero, left, right)], dim=1)
    return Conditioning(context, zero)


def run_scenes(st: Study_, scenes: portraits.Split, n: int, seed: int) -> dict[str, dict]:
    """Two held-out identities per scene, each from its first reference; the style is the scene with both faces
    masked. The masked arm restricts each person's region to its identity's tokens (outside: the identity-free
    group); the vanilla arm lets every query see every token. A scene is correct when the evaluator identifies
    both people in their own boxes among all held-out identities (the issue's definition; the swap rate is the
    rest); also shown: among the scene's two identities only, and strict swaps (each closer to the other)."""
    proto, gen = st.proto, st.gen
    n = min(n, len(scenes.images))
    index = {int(g): k for k, g in enumerate(proto.ids)}
    pairs = torch.tensor([[index[int(a)], index[int(b)]] for a, b in scenes.identity[:n]])
    images = torch.from_numpy(np.ascontiguousarray(scenes.images[:n])).permute(0, 3, 1, 2).float() / 127.5 - 1
    boxes = ev.boxes_of(torch.from_numpy(scenes.masks[:n].astype(np.uint8)))  # (n, 2, 4)
    masked = mask_faces(mask_faces(images, boxes[:, 0]), boxes[:, 1])
    e_h = st.enc.encode_style(masked)
    regions = ev.region_map(boxes, images.shape[-1])
    groups = torch.arange(3).repeat_interleave(gen.config.tokens)
    original = gen.unet.attn_processors
    out = {}
    for name in ("masked", "vanilla"):
        if name == "masked":
            gen.unet.set_attn_processor(MaskedIdentityAttnProcessor())

        def conditions(sl, name=name):
            left, right = st.e_f1[pairs[sl, 0]], st.e_f1[pairs[sl, 1]]
            cond = scene_conditioning(gen, e_h[sl], left, right)
            null = scene_conditioning(gen, e_h[sl], 0 * left, 0 * right)
            if name == "masked":
                kwargs = {"identity_regions": regions[sl], "token_groups": groups}
                cond.attention_kwargs, null.attention_kwargs = kwargs, dict(kwargs)
            return cond, null

        generated = _generate(gen, conditions, n, guidance=st.p.identity_guidance, steps=st.p.sample_steps, seed=seed)
        gen.unet.set_attn_processor(dict(original))
        out[name] = {**score_scenes(st, generated, boxes, pairs), "grid": generated[:GRID_IDS]}
    out["style"] = {"grid": images[:GRID_IDS], "masked": masked[:GRID_IDS]}
    return out


def score_scenes(st: Study_, images: torch.Tensor, boxes: torch.Tensor, pairs: torch.Tensor) -> dict[str, float]:
    e = [
        ev.embed(st.enc.evaluator, images, boxes[:, p], ev.EVALUATOR_CROP) @ st.proto.gallery.T for p in range(2)
    ]  # cosines of each person's crop to every prototype
    rows = torch.arange(len(images))
    own = [e[p].argmax(1) == pairs[:, p] for p in range(2)]
    closer_own = [e[p][rows, pairs[:, p]] > e[p][rows, pairs[:, 1 - p]] for p in range(2)]
    return {
        "swap_rate": 1 - (own[0] & own[1]).float().mean().item(),
        "swap_rate_within_pair": 1 - (closer_own[0] & closer_own[1]).float().mean().item(),
        "strict_swaps": (~closer_own[0] & ~closer_own[1]).float().mean().item(),
        "person_top1": torch.cat(own).float().mean().item(),
        "scenes": len(images),
    }


def run_beta_sweep(st: Study_, betas: list[float], seed: int) -> list[dict]:
    """Blend identity A (the target) with B (the next held-out identity): e_f = beta e_A + (1 - beta) e_B, in
    A's style images; the evaluator's cosine to each and the share of samples closer to A than to B."""
    proto = st.proto
    target = proto.target
    other = (target + 1) % len(proto.ids)
    rows = []
    for beta in betas:

        def conditions(sl, beta=beta):
            mixed = mix_identities(torch.stack([st.e_f1[target[sl]], st.e_f1[other[sl]]], 1), [beta, 1 - beta])
            f = F.normalize(mixed, dim=-1)  # unit norm, as every embedding the generator was trained on
            return image_conditioning(st.gen, st.e_h[sl], f), image_conditioning(st.gen, st.e_h[sl], 0 * f)

        images = _generate(
            st.gen, conditions, len(target), guidance=st.p.identity_guidance, steps=st.p.sample_steps, seed=seed
        )
        cos = ev.embed(st.enc.evaluator, images, proto.style_boxes, ev.EVALUATOR_CROP) @ proto.gallery.T
        rows_ = torch.arange(len(images))
        a, b = cos[rows_, target], cos[rows_, other]
        rows.append(
            {
                "beta": beta,
                "cos_a": a.mean().item(),
                "cos_b": b.mean().item(),
                "closer_to_a": (a > b).float().mean().item(),
                "grid": images[:GRID_IDS],
            }
        )
    return rows
