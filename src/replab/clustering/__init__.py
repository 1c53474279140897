"""Probability aggregation clustering: offline PAC and online PAC / DPAC."""

from .pac import PAC

__all__ = ["PAC"]
