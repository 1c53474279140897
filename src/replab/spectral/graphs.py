"""Graphs and meshes for Schrödinger PCA on manifolds."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .operators import graph_laplacian


def cotangent_laplacian(vertices: np.ndarray, faces: np.ndarray) -> sp.csr_matrix:
    """Mass-normalised cotangent Laplacian ``M^-1/2 L_cot M^-1/2`` of a triangle mesh (``M``: lumped
    vertex areas). Unlike the combinatorial graph Laplacian it converges to the Laplace-Beltrami
    operator as the mesh is refined, and it stays symmetric."""
    vertices, faces = np.asarray(vertices, dtype=float), np.asarray(faces)
    n = len(vertices)
    rows, cols, weights = [], [], []
    for a, b, opposite in [(0, 1, 2), (1, 2, 0), (2, 0, 1)]:
        u = vertices[faces[:, a]] - vertices[faces[:, opposite]]
        v = vertices[faces[:, b]] - vertices[faces[:, opposite]]
        cot = np.einsum("ij,ij->i", u, v) / np.linalg.norm(np.cross(u, v), axis=1)
        rows += [faces[:, a], faces[:, b]]
        cols += [faces[:, b], faces[:, a]]
        weights += [cot / 2, cot / 2]
    w = sp.csr_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    lap = sp.diags(np.asarray(w.sum(axis=1)).ravel()) - w
    edge1 = vertices[faces[:, 1]] - vertices[faces[:, 0]]
    edge2 = vertices[faces[:, 2]] - vertices[faces[:, 0]]
    tri_area = np.linalg.norm(np.cross(edge1, edge2), axis=1) / 2
    area = np.bincount(faces.ravel(), weights=np.repeat(tri_area / 3, 3), minlength=n)
    scale = sp.diags(1.0 / np.sqrt(area))
    return sp.csr_matrix(scale @ lap @ scale)


def icosphere_laplacian(subdivisions: int, kind: str = "graph") -> tuple[np.ndarray, sp.csr_matrix]:
    """Vertices of a geodesic icosphere (unit radius) and its Laplacian: ``kind="graph"`` for the
    combinatorial ``D - A`` of its edges, ``"cotangent"`` for :func:`cotangent_laplacian`."""
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)
    vertices = np.asarray(mesh.vertices)
    if kind == "cotangent":
        return vertices, cotangent_laplacian(vertices, np.asarray(mesh.faces))
    if kind != "graph":
        raise ValueError(f"kind must be 'graph' or 'cotangent', got {kind!r}")
    edges = np.asarray(mesh.edges_unique)
    n = len(vertices)
    adjacency = sp.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    return vertices, graph_laplacian(adjacency + adjacency.T)


def degeneracy_groups(values: np.ndarray, rel_tol: float) -> list[int]:
    """Sizes of the levels in sorted ``values``: a new level starts where the gap to the previous
    value exceeds ``rel_tol * (max - min)``."""
    values = np.sort(np.asarray(values, dtype=float))
    if values.size == 0:
        return []
    span = values[-1] - values[0] or 1.0
    sizes, run = [], 1
    for gap in np.diff(values):
        if gap > rel_tol * span:
            sizes.append(run)
            run = 1
        else:
            run += 1
    sizes.append(run)
    return sizes
