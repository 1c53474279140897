"""Schrödinger PCA and the tools to evaluate it."""

from .schrodinger_pca import SchrodingerPCA

__all__ = ["SchrodingerPCA"]
