"""The papers of the pipeline: notebook stage name -> what the report says about it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Paper:
    key: str  # params.yaml section, notebook and metrics file name
    title: str
    citation: str


PAPERS: dict[str, Paper] = {
    p.key: p
    for p in [
        Paper(
            "accept",
            "AccEPT: edge pipeline-parallel training (reconstruction)",
            "AccEPT: An Acceleration Scheme for Speeding Up Edge Pipeline-parallel Training. arXiv:2311.05827, IEEE TMC 2024",
        ),
        Paper(
            "pac",
            "PAC / DPAC: probability aggregation clustering",
            "Yan, Lu, Yan. Deep Online Probability Aggregation Clustering. ECCV 2024, arXiv:2407.05246",
        ),
        Paper(
            "schrodinger_pca",
            "Schrödinger PCA",
            "Liu, Qian, Wang, Yan, Yang. Schrödinger PCA: on the duality between PCA and Schrödinger equation. "
            "Phys. Rev. E 104, 025307 (2021), arXiv:2006.04379",
        ),
    ]
}


def get(key: str) -> Paper:
    if key not in PAPERS:
        raise ValueError(f"unknown paper {key!r}; known: {sorted(PAPERS)}")
    return PAPERS[key]
