"""params.yaml section ``targets``: which targets the device stages (``profile@<target>``) run on."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..schema import Profile, Strict, require_every_profile
from .config import NAME_PATTERN


class ProfilingScale(Strict):
    grid: Literal["tiny", "full"] = Field(description="layer configurations measured (replab.edge.layer_timing)")
    repeats: int = Field(ge=1, le=20, description="calls per layer at least (and 0.2 s at least)")


class TargetsParams(Strict):
    run_on: list[str] = Field(
        min_length=1, description="targets defined in targets.local.yaml (`local` is built in), one stage each"
    )
    scale: dict[Profile, ProfilingScale]

    @model_validator(mode="after")
    def _checks(self):
        require_every_profile(self.scale)
        import re

        bad = [n for n in self.run_on if not re.match(NAME_PATTERN, n)]
        if bad or len(set(self.run_on)) != len(self.run_on):
            raise ValueError(f"run_on: target names are lower-case letters, digits, - and _, each once (got {bad})")
        return self
