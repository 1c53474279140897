"""params.yaml section ``schrodinger_pca``."""

from __future__ import annotations

from pydantic import Field, model_validator

from ..schema import Profile, Strict, require_every_profile


class SpcaScale(Strict):
    """Sizes of the Schrödinger PCA experiments; the profile picks one set."""

    sweep_grid: int = Field(ge=15, le=401, description="side of the 2-D grid in the anchor-spacing sweep")
    sweep_samples: int = Field(ge=50, description="fields sampled per sweep cell")
    oscillator_grid: int = Field(ge=21, le=2001, description="side of the harmonic-oscillator grid")
    icosphere_subdivisions: int = Field(ge=1, le=7)
    line_points: int = Field(ge=50, description="points of the 1-D GP")
    line_samples: int = Field(ge=20)


class SchrodingerPcaParams(Strict):
    n_components: int = Field(ge=1, le=50)
    anchor_spacing: int = Field(ge=2, le=20, description="anchor spacing of the undersampled variances, px")
    interpolation: str = Field(pattern="^(linear|cubic)$")
    degeneracy_tol: float = Field(
        ge=0.0, le=0.2, description="widen true subspaces over levels this close (x top eigenvalue)"
    )
    sweep_anchor_spacings: list[int] = Field(min_length=1)
    sweep_filter_widths: list[float] = Field(min_length=1)
    oscillator_c: float = Field(gt=0)
    oscillator_radius_fraction: float = Field(gt=0.5, le=20, description="R of 1 - r^2/R^2 over the grid side")
    scale: dict[Profile, SpcaScale]

    @model_validator(mode="after")
    def _checks(self):
        require_every_profile(self.scale)
        if any(s < 2 for s in self.sweep_anchor_spacings):
            raise ValueError("sweep_anchor_spacings must all be >= 2")
        if any(w <= 0 for w in self.sweep_filter_widths):
            raise ValueError("sweep_filter_widths must all be positive")
        return self
