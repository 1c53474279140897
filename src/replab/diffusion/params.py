"""params.yaml section ``idsynth`` (FaceStudio on diffusers)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..schema import Profile, Strict, require_every_profile


class IdsynthScale(Strict):
    generator: Literal["tiny", "laptop", "sd15"] = Field(
        description="tiny / laptop: built from scratch (replab.diffusion.generator); sd15: Stable Diffusion 1.5 "
        "fine-tuned, with CLIP ViT-L/14 and ArcFace, all from model_cache"
    )
    identity_steps: int = Field(ge=1, description="the conditioning identity CNN (batch encoder_batch)")
    evaluator_steps: int = Field(ge=1, description="the independent evaluator (batch encoder_batch)")
    encoder_batch: int = Field(ge=2)
    clip_steps: int = Field(ge=1, description="tiny CLIP, contrastive (batch encoder_batch)")
    prior_steps: int = Field(ge=1)
    attribute_steps: int = Field(ge=1, description="the style attribute classifier (evaluation only)")
    generator_steps: int = Field(ge=1, description="generator training steps (counted in steps, not minutes)")
    generator_batch: int = Field(ge=1)
    # Per profile: a generator trained from scratch and a fine-tune of Stable Diffusion need rates 100x apart.
    lr: float = Field(gt=0, description="generator and IP-Adapter learning rate (AdamW)")
    dreambooth_lr: float = Field(gt=0, description="the DreamBooth-like arm's learning rate (every weight)")
    inversion_lr: float = Field(gt=0, description="the Textual-Inversion-like arm's learning rate (the slot only)")
    checkpoint_every: int = Field(ge=1, description="steps between resumable checkpoints")
    ip_steps: int = Field(ge=1, description="IP-Adapter training steps (the base frozen)")
    tune_steps: int = Field(
        ge=1, description="steps of the DreamBooth-like / Textual-Inversion-like arms before they are scored"
    )
    tune_check_every: int = Field(ge=1, description="steps between identity checks while they tune (up to tune_steps)")
    # The DreamBooth-like arm's time-to-our-score has a target (>= 100 generations' time): its search must be able
    # to run past that time, so it goes on beyond tune_steps, while our score is not reached, up to reach_steps.
    reach_steps: int = Field(
        ge=1, description="most steps the DreamBooth-like arm tunes while it has not reached our score"
    )
    reach_check_every: int = Field(ge=1, description="steps between identity checks beyond tune_steps")
    styles_per_identity: int = Field(ge=1, description="style images per held-out identity in the evaluation")
    scenes: int = Field(ge=1, description="held-out two-person scenes scored for identity swaps")

    @model_validator(mode="after")
    def _reach_after_scoring(self):
        if self.reach_steps < self.tune_steps:
            raise ValueError(f"reach_steps ({self.reach_steps}) must be >= tune_steps ({self.tune_steps})")
        return self


class IdsynthParams(Strict):
    p_style: float = Field(ge=0, lt=1, description="CFG dropout of the style embedding (paper: 0.64)")
    p_face: float = Field(ge=0, lt=1, description="CFG dropout of the identity embedding (paper: 0.1)")
    ip_tokens: int = Field(ge=1)
    sample_steps: int = Field(ge=1, description="Euler-ancestral steps (paper: 25)")
    identity_guidance: float = Field(ge=1, description="CFG scale on the identity (style kept in both passes)")
    references: int = Field(ge=2, description="N, the references averaged (beta = 1/N) in the N-reference arms")
    tuned_identities: int = Field(ge=1, description="held-out identities the per-identity tuning arms run on")
    sampling_seeds: int = Field(ge=1)
    alphas: list[float] = Field(min_length=2, description="hybrid-guidance sweep: 1 image branch .. 0 text")
    betas: list[float] = Field(min_length=2, description="identity-blending sweep between two identities")
    model_cache: str = Field(description="paper profile: folder with Stable Diffusion 1.5, CLIP and ArcFace")
    scale: dict[Profile, IdsynthScale]

    @model_validator(mode="after")
    def _checks(self):
        require_every_profile(self.scale)
        for name, values in (("alphas", self.alphas), ("betas", self.betas)):
            if min(values) < 0 or max(values) > 1:
                raise ValueError(f"{name} must lie in [0, 1], got {values}")
        if 1.0 not in self.alphas:
            raise ValueError("alphas must include 1 (the image-guidance arm)")
        return self
