"""Simplicial bodies for the elastodynamics case: triangle meshes (2D) and tetrahedral
meshes (3D), read from any file meshio reads or generated in code (``builtin:NAME``).

A :class:`Mesh` is the reference configuration Ω of a body: ``points`` (n, d) and
``cells`` (m, d+1) simplices, each positively oriented, i.e. with signed volume

    vol(T) = det[x₁ − x₀, …, x_d − x₀] / d!  > 0.

Its boundary ∂Ω is the set of faces ((d−1)-simplices) that belong to exactly one
simplex, ordered so that their normal points out of the body: for a triangle
(a, b, c) the edges (a, b), (b, c), (c, a) with outward normal (Δy, −Δx)/|Δ|; for a
tetrahedron the faces whose normal (q − p) × (r − p) points away from the fourth vertex.

:func:`sample_volume` draws points uniformly in Ω (a simplex with probability
vol(T)/|Ω|, then uniform barycentric coordinates: normalised exponentials,
i.e. Dirichlet(1, …, 1)); :func:`sample_surface` likewise on ∂Ω with outward normals.
Uniform samples make the Monte Carlo mean of f an unbiased estimate of
(1/|Ω|)∫_Ω f dX.

Importing this module imports numpy only: meshio is imported when a file is read or
written, torch when sampling.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from insr_hpc.errors import InsrError, did_you_mean, one_line

if TYPE_CHECKING:  # pragma: no cover
    import torch

MESH_KEY = "problem.mesh"
BUILTIN_PREFIX = "builtin:"
REASON_CHARS = 200  # a parser's message is cut to this many characters

BUILTINS: dict[str, str] = {
    "square": "2D unit square [-0.5, 0.5]², structured triangles (default 16 cells a side)",
    "bar": "2D bar [0, 2] × [-0.2, 0.2], structured triangles (default 32 cells along x)",
    "beam": "3D beam [0, 2] × [-0.25, 0.25]², hexes split into 6 tetrahedra (default 16 cells along x)",
    "torus": "3D ring about the z axis, major radius 0.6, round cross-section of radius 0.2 (default 40 cells around)",
}

# Medit/meshio cell types: the simplices this module takes, with their dimension, and
# the dimension of the other element types it recognises (to refuse them by name).
SIMPLEX_DIM = {
    "vertex": 0,
    "line": 1,
    "line3": 1,
    "triangle": 2,
    "triangle6": 2,
    "triangle7": 2,
    "tetra": 3,
    "tetra10": 3,
}
OTHER_DIM = {
    "quad": 2,
    "quad8": 2,
    "quad9": 2,
    "polygon": 2,
    "hexahedron": 3,
    "hexahedron20": 3,
    "hexahedron27": 3,
    "wedge": 3,
    "wedge15": 3,
    "pyramid": 3,
    "pyramid13": 3,
}
SIMPLEX_NAME = {0: "vertices", 1: "lines", 2: "triangles", 3: "tetrahedra"}
SIDES = {"-x": (0, 0), "+x": (0, 1), "-y": (1, 0), "+y": (1, 1), "-z": (2, 0), "+z": (2, 1)}
SIDE_ALIASES = {"left": "-x", "right": "+x"}

# Local faces of a positively oriented simplex, each ordered with outward normal.
TRI_EDGES = np.array([[0, 1], [1, 2], [2, 0]])
TET_FACES = np.array([[1, 2, 3], [0, 3, 2], [0, 1, 3], [0, 2, 1]])

DEGENERATE_RTOL = 1e-10  # |vol(T)| ≤ rtol · (longest edge)^d counts as zero volume


class MeshError(InsrError):
    """A mesh file or builtin spec that cannot be used. The message reads
    ``problem.mesh 'SPEC': what is wrong`` (``key`` may name another config key)."""

    def __init__(self, source: str, reason: str, key: str = MESH_KEY):
        self.source = str(source)
        self.reason = reason
        self.key = key
        prefix = f"{key} '{self.source}'" if key else f"'{self.source}'"
        super().__init__(f"{prefix}: {reason}")


def _frozen(a: np.ndarray, dtype) -> np.ndarray:
    out = np.array(a, dtype=dtype, order="C", copy=True)
    out.setflags(write=False)
    return out


def signed_volumes(points: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """det[x₁ − x₀, …, x_d − x₀]/d! per simplex (positive for positive orientation)."""
    d = points.shape[1]
    x = points[cells]
    edges = x[:, 1:, :] - x[:, :1, :]  # (m, d, d), rows x_i − x_0
    return np.linalg.det(edges) / math.factorial(d) if len(cells) else np.zeros(0)


def _face_measures(points: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Area (3D) or length (2D) of each oriented boundary face and its unit outward normal."""
    x = points[faces]
    if points.shape[1] == 2:
        t = x[:, 1] - x[:, 0]
        n = np.stack([t[:, 1], -t[:, 0]], axis=1)
    else:
        n = 0.5 * np.cross(x[:, 1] - x[:, 0], x[:, 2] - x[:, 0])
    size = np.linalg.norm(n, axis=1)
    return size, n / np.where(size > 0, size, 1.0)[:, None]


def _row_keys(arrays: Sequence[np.ndarray], n: int) -> list[np.ndarray]:
    """Each row of each array (indices < n, k per row) as one int64 key, equal for two
    rows exactly when they hold the same vertex set (keys comparable across arrays)."""
    rows = [np.sort(np.asarray(a, dtype=np.int64), axis=1) for a in arrays]
    k = rows[0].shape[1]
    if float(n) ** k < 2.0**62:
        keys = []
        for a in rows:
            key = np.zeros(len(a), dtype=np.int64)
            for j in range(k):
                key = key * n + a[:, j]
            keys.append(key)
        return keys
    inverse = np.unique(np.concatenate(rows), axis=0, return_inverse=True)[1].ravel().astype(np.int64)
    return np.split(inverse, np.cumsum([len(a) for a in rows])[:-1])


def _all_faces(cells: np.ndarray) -> np.ndarray:
    """(m·(d+1), d) outward-oriented faces of every simplex, simplex-major."""
    local = TRI_EDGES if cells.shape[1] == 3 else TET_FACES
    return cells[:, local].reshape(-1, cells.shape[1] - 1)


def _face_counts(cells: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All faces, and per face how many simplices hold it (same order)."""
    faces = _all_faces(cells)
    (keys,) = _row_keys([faces], n)
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    return faces, counts[inverse.ravel()], keys


@dataclass(frozen=True, eq=False)
class Mesh:
    """A simplicial body: reference positions ``points`` (n, d), d = 2 or 3, float64;
    ``cells`` (m, d+1) int64 simplices, every one positively oriented; ``source`` is the
    path or builtin spec it came from. Arrays are read-only."""

    points: np.ndarray
    cells: np.ndarray
    source: str

    def __post_init__(self):
        object.__setattr__(self, "points", _frozen(self.points, np.float64))
        object.__setattr__(self, "cells", _frozen(self.cells, np.int64))

    def __repr__(self) -> str:
        return f"Mesh({self.source!r}, dim={self.dim}, vertices={len(self.points)}, cells={len(self.cells)})"

    @functools.cached_property
    def _tensors(self) -> dict:
        return {}

    @property
    def dim(self) -> int:
        return int(self.points.shape[1])

    @functools.cached_property
    def volumes(self) -> np.ndarray:
        """(m,) area (2D) or volume (3D) of each simplex."""
        return _frozen(signed_volumes(self.points, self.cells), np.float64)

    @property
    def measure(self) -> float:
        """|Ω|: total area (2D) or volume (3D)."""
        return float(self.volumes.sum())

    @functools.cached_property
    def boundary_faces(self) -> np.ndarray:
        """(k, d) faces held by exactly one simplex: edges (2D) or triangles (3D),
        ordered with outward normal."""
        faces, counts, _ = _face_counts(self.cells, len(self.points))
        return _frozen(faces[counts == 1], np.int64)

    @functools.cached_property
    def _face_geometry(self) -> tuple[np.ndarray, np.ndarray]:
        size, normal = _face_measures(self.points, self.boundary_faces)
        return _frozen(size, np.float64), _frozen(normal, np.float64)

    @property
    def face_areas(self) -> np.ndarray:
        """(k,) length (2D) or area (3D) of each boundary face."""
        return self._face_geometry[0]

    @property
    def face_normals(self) -> np.ndarray:
        """(k, d) unit outward normal of each boundary face."""
        return self._face_geometry[1]

    @property
    def boundary_vertices(self) -> np.ndarray:
        """Sorted indices of the vertices on ∂Ω."""
        return np.unique(self.boundary_faces).astype(np.int64)

    @property
    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi), each (d,): the axis-aligned bounding box of the points."""
        return self.points.min(axis=0), self.points.max(axis=0)

    def lumped_volumes(self) -> np.ndarray:
        """(n,) lumped mass per unit density: each simplex's volume split equally among
        its d+1 vertices (∫_Ω λ_i dX for the P1 hat function λ_i; sums to |Ω|)."""
        out = np.zeros(len(self.points))
        np.add.at(out, self.cells.ravel(), np.repeat(self.volumes / self.cells.shape[1], self.cells.shape[1]))
        return out

    def refined(self, levels: int = 1) -> "Mesh":
        """Uniform (red) refinement, ``levels`` times: every edge is halved, a triangle
        becomes 4, a tetrahedron 8 (4 corner tetrahedra and its inner octahedron cut
        along its shortest diagonal). Original vertices keep their indices; the edge
        midpoints follow, in order of their (sorted) vertex pairs. Orientation is kept."""
        if levels < 0:
            raise ValueError(f"levels must be >= 0, got {levels}")
        points, cells = self.points, self.cells
        for _ in range(levels):
            points, cells = _refine_once(points, cells)
        return Mesh(points, cells, self.source)

    def select(self, side: str | None = None, box: Sequence[float] | None = None, tol: float = 1e-9) -> np.ndarray:
        """Indices (sorted int64) of the vertices on one face of the bounding box
        (``side``: ``-x +x -y +y -z +z``, or ``left right bottom top``; bottom/top
        are along the last axis) within tol·(largest extent), and/or inside ``box``
        [lo₁ … lo_d, hi₁ … hi_d] (closed, widened by the same tolerance). Both given:
        the vertices that satisfy both."""
        d = self.dim
        lo, hi = self.bbox
        eps = tol * float(max(np.max(hi - lo), np.finfo(float).tiny))
        mask = np.ones(len(self.points), dtype=bool)
        if side is not None:
            axis, end = self._side(side)
            value = (lo, hi)[end][axis]
            mask &= np.abs(self.points[:, axis] - value) <= eps
        if box is not None:
            b = np.asarray(box, dtype=np.float64).ravel()
            if b.size != 2 * d or not np.all(np.isfinite(b)):
                raise MeshError(self.source, f"box must be {2 * d} finite numbers [lo_1..lo_{d}, hi_1..hi_{d}], got {list(box)}")
            blo, bhi = b[:d], b[d:]
            if np.any(blo > bhi):
                raise MeshError(self.source, f"box {list(box)}: a lower bound exceeds its upper bound")
            mask &= np.all((self.points >= blo - eps) & (self.points <= bhi + eps), axis=1)
        return np.flatnonzero(mask).astype(np.int64)

    def _side(self, side: str) -> tuple[int, int]:
        aliases = dict(SIDE_ALIASES)
        aliases["bottom"] = "-z" if self.dim == 3 else "-y"
        aliases["top"] = "+z" if self.dim == 3 else "+y"
        name = aliases.get(side, side)
        if name not in SIDES or SIDES[name][0] >= self.dim:
            known = [s for s, (a, _) in SIDES.items() if a < self.dim] + list(aliases)
            raise MeshError(
                self.source, f"unknown side '{one_line(str(side))}' for a {self.dim}D mesh; known: {', '.join(known)}"
                + did_you_mean(str(side), known)
            )
        return SIDES[name]


def _orient(points: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """``cells`` with the last two vertices swapped where the signed volume is negative."""
    cells = cells.copy()
    neg = signed_volumes(points, cells) < 0
    cells[neg, -2], cells[neg, -1] = cells[neg, -1], cells[neg, -2].copy()
    return cells


def _refine_once(points: np.ndarray, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, k = len(points), cells.shape[1]
    pairs = np.array(list(itertools.combinations(range(k), 2)))  # local edges (i, j), i < j
    edges = np.sort(cells[:, pairs], axis=2)  # (m, E, 2)
    keys = edges[..., 0] * n + edges[..., 1]
    uniq, inverse = np.unique(keys.ravel(), return_inverse=True)
    mid = n + inverse.reshape(keys.shape)  # (m, E) index of each edge's midpoint
    ends = np.stack([uniq // n, uniq % n], axis=1)
    new_points = np.concatenate([points, 0.5 * (points[ends[:, 0]] + points[ends[:, 1]])])
    col = {tuple(p): e for e, p in enumerate(pairs.tolist())}

    def m(i, j):
        return mid[:, col[(min(i, j), max(i, j))]]

    v = [cells[:, i] for i in range(k)]
    if k == 3:
        children = [
            (v[0], m(0, 1), m(0, 2)),
            (m(0, 1), v[1], m(1, 2)),
            (m(0, 2), m(1, 2), v[2]),
            (m(0, 1), m(1, 2), m(0, 2)),
        ]
        out = np.stack([np.stack(c, axis=1) for c in children], axis=1).reshape(-1, 3)
        return new_points, out
    children = [(v[i], *(m(i, j) for j in range(4) if j != i)) for i in range(4)]
    # Inner octahedron: diagonals join midpoints of opposite edges (ab, cd); the four
    # other midpoints form the equator ac, ad, bd, bc. Cut along the shortest diagonal.
    diagonals = [((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))]
    lengths = np.stack(
        [np.linalg.norm(new_points[m(*ab)] - new_points[m(*cd)], axis=1) for ab, cd in diagonals], axis=1
    )
    choice = np.argmin(lengths, axis=1)
    octa = np.zeros((len(cells), 4, 4), dtype=np.int64)
    for c, ((a, b), (cc, d)) in enumerate(diagonals):
        equator = [m(a, cc), m(a, d), m(b, d), m(b, cc)]
        sel = choice == c
        for q in range(4):
            tet = np.stack([m(a, b), m(cc, d), equator[q], equator[(q + 1) % 4]], axis=1)
            octa[sel, q] = tet[sel]
    corner = np.stack([np.stack(c, axis=1) for c in children], axis=1)
    out = np.concatenate([corner, octa], axis=1).reshape(-1, 4)
    return new_points, _orient(new_points, out)


# --------------------------------------------------------------------------- builtins


def _grid_2d(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Structured triangles on the tensor grid x × y (vertex (i, j) = i + j·len(x));
    diagonals alternate (a criss-cross pattern, symmetric under reflections)."""
    nx, ny = len(x) - 1, len(y) - 1
    X, Y = np.meshgrid(x, y)
    points = np.stack([X.ravel(), Y.ravel()], axis=1)
    i, j = np.meshgrid(np.arange(nx), np.arange(ny))
    i, j = i.ravel(), j.ravel()
    v00 = i + j * (nx + 1)
    v10, v01, v11 = v00 + 1, v00 + nx + 1, v00 + nx + 2
    flip = (i + j) % 2 == 1
    t1 = np.where(flip[:, None], np.stack([v00, v10, v01], 1), np.stack([v00, v10, v11], 1))
    t2 = np.where(flip[:, None], np.stack([v10, v11, v01], 1), np.stack([v00, v11, v01], 1))
    return points, np.concatenate([t1, t2])


def _kuhn_cells(shape: tuple[int, int, int], index, mirror=None) -> np.ndarray:
    """Tetrahedra of a structured hex grid of ``shape`` cells, 6 per hex (Kuhn split:
    each tetrahedron follows a monotone path along the hex's main diagonal), with
    vertex numbering ``index(i, j, k)``. ``mirror(i, j, k)`` → (3,) bools: per hex and
    axis whether the split is reflected along that axis; the split stays conforming
    when reflections only change across grid planes (the shared face is fixed by the
    reflection)."""
    I, J, K = np.meshgrid(*(np.arange(s) for s in shape), indexing="ij")
    I, J, K = I.ravel(), J.ravel(), K.ravel()
    flips = np.zeros((len(I), 3), dtype=bool) if mirror is None else mirror(I, J, K)
    out = []
    for perm in itertools.permutations(range(3)):
        corners = [np.zeros((len(I), 3), dtype=np.int64)]
        for axis in perm:
            step = corners[-1].copy()
            step[:, axis] = 1
            corners.append(step)
        tet = []
        for c in corners:
            c = np.where(flips, 1 - c, c)
            tet.append(index(I + c[:, 0], J + c[:, 1], K + c[:, 2]))
        out.append(np.stack(tet, axis=1))
    return np.concatenate(out)


def _even(x: float, least: int = 2) -> int:
    return max(least, 2 * int(round(x / 2)))


def _builtin_square(res: int) -> tuple[np.ndarray, np.ndarray]:
    n = res or 16
    t = np.linspace(-0.5, 0.5, n + 1)
    return _grid_2d(t, t)


def _builtin_bar(res: int) -> tuple[np.ndarray, np.ndarray]:
    nx = res or 32
    ny = _even(nx * 0.4 / 2.0)
    return _grid_2d(np.linspace(0.0, 2.0, nx + 1), np.linspace(-0.2, 0.2, ny + 1))


def _builtin_beam(res: int) -> tuple[np.ndarray, np.ndarray]:
    nx = res or 16
    ny = _even(nx * 0.5 / 2.0)
    x, y = np.linspace(0.0, 2.0, nx + 1), np.linspace(-0.25, 0.25, ny + 1)
    X, Y, Z = np.meshgrid(x, y, y, indexing="ij")
    points = np.stack([X.ravel(), Y.ravel(), Z.ravel()], axis=1)
    cells = _kuhn_cells((nx, ny, ny), lambda i, j, k: (i * (ny + 1) + j) * (ny + 1) + k)
    return points, cells


def _builtin_torus(res: int) -> tuple[np.ndarray, np.ndarray]:
    """Ring swept about z: cross-section square [−1, 1]² (q × q cells) mapped onto the
    disc of radius a by the elliptical map (u√(1 − v²/2), v√(1 − u²/2)), placed at
    radius R + a·x, height a·y, at n angles θ (periodic). In each quadrant of the
    cross-section the split is mirrored so that diagonals run outwards: the corner
    cells of the square (flattened onto the circle) are cut through their corner."""
    R, a = 0.6, 0.2
    n = res or 40
    q = _even(n * 2 * a / (2 * math.pi * R), least=4)
    s = np.linspace(-1.0, 1.0, q + 1)
    U, V = np.meshgrid(s, s, indexing="ij")
    cx = U * np.sqrt(1 - V**2 / 2)
    cy = V * np.sqrt(1 - U**2 / 2)
    theta = 2 * math.pi * np.arange(n) / n
    rho = R + a * cx.ravel()
    points = np.stack(
        [
            np.outer(np.cos(theta), rho).ravel(),
            np.outer(np.sin(theta), rho).ravel(),
            np.tile(a * cy.ravel(), n),
        ],
        axis=1,
    )

    def index(i, j, k):
        return (k % n) * (q + 1) ** 2 + i * (q + 1) + j

    def mirror(i, j, k):
        return np.stack([i < q // 2, j < q // 2, np.zeros_like(k, dtype=bool)], axis=1)

    cells = _kuhn_cells((q, q, n), index, mirror)
    return points, cells


BUILDERS = {"square": _builtin_square, "bar": _builtin_bar, "beam": _builtin_beam, "torus": _builtin_torus}


# --------------------------------------------------------------------------- reading


def _read_file(path: str):
    if not os.path.exists(path):
        raise MeshError(path, "no such file")
    if os.path.isdir(path):
        raise MeshError(path, "is a directory, not a mesh file")
    import meshio  # noqa: PLC0415 (deferred: keeps this module's import cheap)

    try:
        return meshio.read(path)
    except Exception as exc:  # meshio raises anything on a bad file
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if len(reason) > REASON_CHARS:
            reason = reason[: REASON_CHARS - 1] + "…"
        raise MeshError(path, f"cannot be read as a mesh ({type(exc).__name__}: {reason})") from None


def _validated(points: np.ndarray, blocks: list[tuple[str, np.ndarray]], source: str) -> Mesh:
    """A :class:`Mesh` from raw points and (cell type, connectivity) blocks, or
    MeshError naming what is wrong (see :func:`load_mesh`)."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] not in (2, 3) or len(points) == 0:
        raise MeshError(source, f"no usable points (point array of shape {points.shape})")
    try:
        points = points.astype(np.float64)
    except (TypeError, ValueError):
        raise MeshError(source, f"point coordinates are not numbers ({points.dtype})") from None
    bad = ~np.all(np.isfinite(points), axis=1)
    if bad.any():
        raise MeshError(source, f"non-finite coordinates (NaN or inf) at {int(bad.sum())} of {len(points)} points")
    n = len(points)
    simplices: dict[int, list[np.ndarray]] = {}
    for ctype, data in blocks:
        data = np.asarray(data)
        if data.size == 0:
            continue
        if ctype in OTHER_DIM:
            if OTHER_DIM[ctype] >= 2:
                raise MeshError(
                    source, f"holds {len(data)} {ctype} cells: only simplices (triangles in 2D, tetrahedra in 3D) are supported"
                )
            continue
        if ctype not in SIMPLEX_DIM:
            raise MeshError(source, f"holds cells of unsupported type '{ctype}'")
        dim = SIMPLEX_DIM[ctype]
        if not np.issubdtype(data.dtype, np.integer):
            raise MeshError(source, f"{ctype} cell indices are not integers ({data.dtype})")
        data = data.reshape(len(data), -1).astype(np.int64)
        if data.min() < 0 or data.max() >= n:
            bad_cells = int(np.sum(np.any((data < 0) | (data >= n), axis=1)))
            raise MeshError(
                source,
                f"cell indices out of range: {bad_cells} of {len(data)} {ctype} cells refer to vertices outside "
                f"0..{n - 1} (indices {data.min()}..{data.max()})",
            )
        simplices.setdefault(dim, []).append(data[:, : dim + 1])  # higher order: corners first
    top = max((d for d in simplices if d >= 2), default=None)
    if top is None:
        found = ", ".join(f"{sum(len(b) for b in simplices[d])} {SIMPLEX_NAME[d]}" for d in sorted(simplices)) or "no cells"
        raise MeshError(source, f"no volume elements (triangles or tetrahedra): found {found}")
    if top == 2 and points.shape[1] == 3:
        used = np.unique(np.concatenate(simplices[2]).ravel())
        z = points[used, 2]
        extent = float(np.ptp(points[used], axis=0).max())
        if np.ptp(z) > 1e-12 * max(extent, 1.0):
            raise MeshError(
                source,
                "no volume elements: only triangles, with 3D points not all on one plane z = const (a surface mesh, "
                "or mixed dimensions); a 3D body needs tetrahedra",
            )
        points = points[:, :2]
    if top == 3 and points.shape[1] == 2:
        raise MeshError(source, "tetrahedra with 2D points (mixed dimensions)")
    cells = np.concatenate(simplices[top])
    for dim in sorted(d for d in simplices if d < top):
        lower = np.concatenate(simplices[dim])
        if dim == 0:
            stray = ~np.isin(lower[:, 0], cells)
        else:
            subs = np.concatenate([cells[:, list(c)] for c in itertools.combinations(range(top + 1), dim + 1)])
            lower_keys, sub_keys = _row_keys([lower, subs], n)
            stray = ~np.isin(lower_keys, sub_keys)
        if stray.any():
            raise MeshError(
                source,
                f"mixed dimensions: {int(stray.sum())} of {len(lower)} {SIMPLEX_NAME[dim]} are not "
                f"{'vertices' if dim == 0 else 'faces' if dim == top - 1 else 'edges'} of the {SIMPLEX_NAME[top]} "
                f"(a stray {dim}D part beside the {top}D body?)",
            )
    used = np.unique(cells)
    if len(used) < n:
        remap = np.full(n, -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        points, cells = points[used], remap[cells]
    vol = signed_volumes(points, cells)
    x = points[cells]
    longest = np.max(
        [np.linalg.norm(x[:, i] - x[:, j], axis=1) for i, j in itertools.combinations(range(top + 1), 2)], axis=0
    )
    zero = np.abs(vol) <= DEGENERATE_RTOL * longest**top
    name = SIMPLEX_NAME[top]
    if zero.any():
        raise MeshError(source, f"{int(zero.sum())} of {len(cells)} {name} are degenerate (zero volume)")
    negative = vol < 0
    if negative.all() and top == 2:
        # a flat mesh consistently clockwise: its plane's normal points the other way (a
        # convention, not an error). A 3D body has one orientation: negative is inverted.
        cells = _orient(points, cells)
    elif negative.any():
        raise MeshError(source, f"{int(negative.sum())} of {len(cells)} {name} are inverted (negative volume)")
    _, counts, keys = _face_counts(cells, len(points))
    over = np.unique(keys[counts > 2])
    if len(over):
        raise MeshError(
            source, f"not conforming: {len(over)} faces are shared by more than two {name} (overlapping or duplicated cells)"
        )
    return Mesh(points, cells, source)


@functools.lru_cache(maxsize=8)
def _load_file_cached(path: str, stamp: tuple[int, int], source: str) -> Mesh:
    raw = _read_file(path)
    return _validated(raw.points, [(b.type, b.data) for b in raw.cells], source)


def load_mesh(spec: str, resolution: int = 0) -> Mesh:
    """The body named by ``spec``: ``builtin:NAME`` (:data:`BUILTINS`; ``resolution``
    cells along its longest side, 0 for the default) or a path to any file meshio
    reads (Medit .mesh, Gmsh .msh, .vtu, .vtk, .obj, …; ``resolution`` is ignored).

    The highest-dimensional simplices are the body; lower-dimensional cells (boundary
    triangles of a Medit file, Gmsh physical lines) are accepted when they are faces,
    edges or vertices of those and otherwise ignored. A triangle mesh whose points lie
    on one plane z = const is a 2D body. Points no cell uses are dropped (the others
    keep their order); a mesh whose simplices are all negatively oriented is reversed.

    Raises MeshError for: a missing or unreadable file, no volume elements (a surface
    mesh), mixed dimensions, non-simplex elements, non-finite coordinates, indices out
    of range, degenerate, inverted or overlapping simplices, an unknown builtin."""
    spec = str(spec)
    if spec.startswith(BUILTIN_PREFIX):
        name = spec[len(BUILTIN_PREFIX) :]
        if name not in BUILDERS:
            raise MeshError(
                spec,
                f"unknown builtin mesh '{one_line(name)}'; known: {', '.join(BUILTIN_PREFIX + b for b in BUILTINS)}"
                + did_you_mean(name, BUILTINS),
            )
        if not isinstance(resolution, (int, np.integer)) or isinstance(resolution, bool) or resolution < 0:
            raise MeshError(spec, f"resolution must be an integer >= 0 (0: the default), got {resolution!r}")
        if resolution == 1:
            raise MeshError(spec, "resolution must be 0 (the default) or at least 2")
        return _builtin_cached(name, int(resolution))
    path = os.path.expanduser(spec)
    try:
        st = os.stat(path)
        stamp = (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = (0, -1)
    return _load_file_cached(os.path.abspath(path), stamp, spec)


@functools.lru_cache(maxsize=16)
def _builtin_cached(name: str, resolution: int) -> Mesh:
    points, cells = BUILDERS[name](resolution)
    return Mesh(points, _orient(points, cells), BUILTIN_PREFIX + name)


def check_mesh(spec: str, resolution: int = 0) -> None:
    """Raise MeshError if ``spec`` cannot be loaded (what config validation calls).
    The loaded mesh is cached, so the run's own :func:`load_mesh` does not read again."""
    load_mesh(spec, resolution)


def write_meshio_files(meshes: Sequence, paths: Sequence[str]) -> None:
    """Write meshio meshes to ``paths`` (formats from the extensions), all or nothing:
    each to a temporary file beside its path, renamed once every one is written. On
    failure the temporary files are removed and meshio's exception propagates."""
    import meshio  # noqa: PLC0415

    tmps = []
    try:
        for mesh, path in zip(meshes, paths, strict=True):
            directory, base = os.path.split(os.path.abspath(path))
            stem, ext = os.path.splitext(base)
            tmps.append(os.path.join(directory, f".{stem}.{os.getpid()}.partial{ext}"))
            meshio.write(tmps[-1], mesh)
        for tmp, path in zip(tmps, paths, strict=True):
            os.replace(tmp, path)
    except BaseException:
        for tmp in tmps:
            if os.path.exists(tmp):
                os.remove(tmp)
        raise


def write_mesh(mesh: Mesh, path: str) -> None:
    """Write ``mesh`` (its simplices only) through meshio, the format from the file
    extension; atomically (:func:`write_meshio_files`)."""
    import meshio  # noqa: PLC0415

    ctype = "triangle" if mesh.dim == 2 else "tetra"
    try:
        write_meshio_files([meshio.Mesh(np.asarray(mesh.points), [(ctype, np.asarray(mesh.cells))])], [path])
    except Exception as exc:
        raise MeshError(path, f"cannot write the mesh ({type(exc).__name__}: {' '.join(str(exc).split())[:REASON_CHARS]})") from None


# --------------------------------------------------------------------------- sampling


def _barycentric(n: int, k: int, gen: "torch.Generator") -> "torch.Tensor":
    """(n, k) uniform points of the (k−1)-simplex: normalised Exp(1) variables
    (−log(1 − u), u ~ U[0, 1)), i.e. Dirichlet(1, …, 1)."""
    import torch  # noqa: PLC0415

    e = -torch.log1p(-torch.rand(n, k, generator=gen, device=gen.device, dtype=torch.float64))
    return e / e.sum(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)


def _tensor(mesh: Mesh, name: str, device) -> "torch.Tensor":
    """``mesh``'s array ``name`` as a tensor on ``device`` (float64 or int64), kept on
    the mesh so that sampling every iteration does not copy the mesh again."""
    import torch  # noqa: PLC0415

    cache = mesh._tensors
    key = (name, str(device))
    if key not in cache:
        cache[key] = torch.from_numpy(np.array(getattr(mesh, name))).to(device)
    return cache[key]


def _sample_simplices(mesh, simplices, weights, n, gen, device, dtype, stratified=False):
    import torch  # noqa: PLC0415

    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    dtype = dtype or torch.get_default_dtype()
    w = _tensor(mesh, weights, gen.device)
    if n == 0:
        idx = torch.zeros(0, dtype=torch.int64, device=gen.device)
    elif stratified:  # systematic: n evenly spaced quantiles of the volume CDF, one random offset
        cdf = torch.cumsum(w, 0)
        cdf = cdf / cdf[-1]
        u = torch.rand(1, generator=gen, device=gen.device, dtype=torch.float64)
        q = (torch.arange(n, device=gen.device, dtype=torch.float64) + u) / n
        idx = torch.searchsorted(cdf, q).clamp_(max=len(w) - 1)
    else:
        idx = torch.multinomial(w, n, replacement=True, generator=gen)
    corners = _tensor(mesh, "points", gen.device)[_tensor(mesh, simplices, gen.device)[idx]]  # (n, k, d)
    lam = _barycentric(n, corners.shape[1], gen)
    x = torch.einsum("nk,nkd->nd", lam, corners)
    return x.to(device=device or gen.device, dtype=dtype), idx


def sample_volume(mesh: Mesh, n: int, gen: "torch.Generator", device=None, dtype=None,
                  stratified: bool = False) -> "torch.Tensor":
    """(n, d) points uniform in the body: a simplex with probability vol(T)/|Ω|, then
    uniform barycentric coordinates in it. Drawn on ``gen``'s device in float64, then
    moved to ``device`` (default: the generator's) as ``dtype`` (default: torch's).

    ``stratified``: the simplices are chosen systematically (the n quantiles (i + u)/n of
    the volume CDF, one uniform u), so every simplex gets ⌊n·vol/|Ω|⌋ or one more points:
    each point is still uniform in the body (an unbiased integral), and the sample
    variance of a smooth integrand falls from O(1/n) towards the within-simplex variance
    only — what an energy integral over a mesh wants (the elasticity case's default)."""
    x, _ = _sample_simplices(mesh, "cells", "volumes", n, gen, device, dtype, stratified)
    return x


def sample_surface(
    mesh: Mesh, n: int, gen: "torch.Generator", device=None, dtype=None
) -> tuple["torch.Tensor", "torch.Tensor"]:
    """(n, d) points uniform on the boundary (a face with probability ∝ its area) and
    (n, d) unit outward normals there."""
    x, idx = _sample_simplices(mesh, "boundary_faces", "face_areas", n, gen, device, dtype)
    normals = _tensor(mesh, "face_normals", gen.device)[idx]
    return x, normals.to(device=x.device, dtype=x.dtype)


def mesh_dim(spec: str, resolution: int = 0) -> int:
    """The dimension of the body ``spec`` names (what config validation needs; the mesh
    is read and checked once, then cached)."""
    return load_mesh(spec, resolution).dim
