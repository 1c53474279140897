"""params.yaml section ``federa`` (FeDeRA on Flower and PEFT)."""

from __future__ import annotations

from pydantic import Field, model_validator

from ..schema import Profile, Strict, require_every_profile
from .methods import METHODS

HEADLINE_METHODS = ("federa", "lora", "fft")  # the headline claims compare these (3 seeds at headline_alpha)


class FederaScale(Strict):
    model: str = Field(
        min_length=1,
        description="minilm (packaged all-MiniLM-L6-v2), tiny-random-bert (smoke tests), or a checkpoint folder / "
        "cached model id",
    )
    n_classes: int = Field(ge=2, le=26, description="the largest WordNet noun supersenses, balanced")
    per_class: int = Field(ge=10, description="glosses per class, split 70/15/15 into train/validation/test")
    n_clients: int = Field(ge=2)
    rounds: int = Field(ge=1)
    seeds: int = Field(ge=1, le=10, description="seeds at headline_alpha for the headline methods")
    alphas: list[float] = Field(min_length=1, description="Dirichlet concentrations (smaller: more non-IID)")
    lr_grid: list[float] = Field(min_length=1, description="the same grid for every method, chosen on validation")
    target_accuracy: float = Field(
        gt=0, le=1, description="validation accuracy of 'time to target', fixed from a pilot run before the runs"
    )


class FederaParams(Strict):
    methods: list[str] = Field(min_length=1, description=f"of {', '.join(METHODS)}")
    headline_alpha: float = Field(gt=0)
    r: int = Field(ge=1, le=256, description="LoRA rank (every adapter method)")
    lora_alpha: int = Field(ge=1, description="LoRA scaling numerator: s = lora_alpha / r")
    pissa_niter: int = Field(ge=0, description="FeDeRA's randomised SVD iterations (0: exact SVD)")
    local_steps: int = Field(ge=1, description="AdamW steps per client per round, the same for every method")
    batch_size: int = Field(ge=1)
    max_len: int = Field(ge=8, description="tokens per gloss (batches are padded to their longest)")
    link_mbit: float = Field(gt=0, description="each client's link, each way, for time to target with communication")
    link_device: str = Field(min_length=1, description="the device profile whose link rate link_mbit is")
    scale: dict[Profile, FederaScale]

    @model_validator(mode="after")
    def _checks(self):
        require_every_profile(self.scale)
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise ValueError(f"unknown methods {unknown} (known: {', '.join(METHODS)})")
        missing = sorted(set(HEADLINE_METHODS) - set(self.methods))
        if missing:
            raise ValueError(f"methods must include the headline methods; missing {missing}")
        for name, s in self.scale.items():
            if self.headline_alpha not in s.alphas:
                raise ValueError(f"scale.{name}.alphas must include headline_alpha ({self.headline_alpha})")
            if min(s.alphas) <= 0:
                raise ValueError(f"scale.{name}.alphas must be > 0, got {s.alphas}")
            if min(s.lr_grid) <= 0:
                raise ValueError(f"scale.{name}.lr_grid must hold positive rates, got {s.lr_grid}")
        return self
