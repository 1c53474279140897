"""Building blocks of the params schema that every paper's params model shares."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict

# tiny: tests and CI, the whole pipeline in minutes; laptop: the default, a 2-core CPU; paper: GPU sizes.
Profile = Literal["tiny", "laptop", "paper"]
PROFILES: tuple[str, ...] = get_args(Profile)


class Strict(BaseModel):
    """Unknown keys, coercions and mutation are errors: a typo in params.yaml never passes silently."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def require_every_profile(scale: dict) -> None:
    missing = sorted(set(PROFILES) - set(scale))
    if missing:
        raise ValueError(f"scale needs an entry for every profile; missing {missing}")
