"""Simplicial bodies (insr_hpc.pde.mesh) and their figures and VTU export
(insr_hpc.pde.mesh_render): builtins are valid closed bodies of the right
measure, samplers are uniform, refinement keeps the coarse vertices, files round-trip
and hostile files are refused with one clear MeshError."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import meshio
import numpy as np
import pytest
import torch
import xarray as xr

from insr_hpc.errors import InsrError
from insr_hpc.pde.mesh import (
    BUILTINS,
    Mesh,
    MeshError,
    check_mesh,
    load_mesh,
    sample_surface,
    sample_volume,
    write_mesh,
)

MEASURE = {"square": 1.0, "bar": 0.8, "beam": 0.5}
TORUS_VOLUME = 2 * math.pi**2 * 0.6 * 0.2**2  # 2π²Ra²
EULER = {"beam": 2, "torus": 0}


def _edges(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique undirected edges of triangles and how many triangles hold each."""
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    return np.unique(e, axis=0, return_counts=True)


def _centroid(mesh: Mesh) -> np.ndarray:
    return (mesh.volumes[:, None] * mesh.points[mesh.cells].mean(axis=1)).sum(0) / mesh.measure


def test_import_is_cheap():
    code = "import sys, insr_hpc.pde.mesh; print('torch' in sys.modules, 'meshio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_is_a_valid_closed_body(name):
    mesh = load_mesh(f"builtin:{name}")
    d = mesh.dim
    assert d == (3 if name in ("beam", "torus") else 2)
    assert mesh.points.dtype == np.float64 and mesh.cells.dtype == np.int64 and mesh.cells.shape[1] == d + 1
    assert 200 <= len(mesh.points) <= 1500
    assert np.all(mesh.volumes > 0)
    assert np.isclose(mesh.measure, mesh.volumes.sum())
    assert np.isclose(mesh.lumped_volumes().sum(), mesh.measure)
    assert np.all(mesh.lumped_volumes() > 0)
    if name in MEASURE:
        assert mesh.measure == pytest.approx(MEASURE[name], rel=1e-12)
    faces = mesh.boundary_faces
    assert faces.shape[1] == d
    # Divergence theorem, exact for a polytope: (1/d) Σ_F |F| n_F·x̄_F = |Ω|; with a
    # wrongly oriented face it fails. Also Σ_F |F| n_F = 0 (closed boundary).
    centres = mesh.points[faces].mean(axis=1)
    flux = (mesh.face_areas * np.einsum("kd,kd->k", mesh.face_normals, centres)).sum() / d
    assert flux == pytest.approx(mesh.measure, rel=1e-10)
    assert np.abs((mesh.face_areas[:, None] * mesh.face_normals).sum(0)).max() < 1e-12
    assert np.allclose(np.linalg.norm(mesh.face_normals, axis=1), 1.0)
    if d == 3:
        edges, counts = _edges(faces)
        assert np.all(counts == 2)  # closed: every boundary edge joins exactly two boundary faces
        chi = len(np.unique(faces)) - len(edges) + len(faces)
        assert chi == EULER[name]
    else:
        assert np.all(np.bincount(faces.ravel())[np.unique(faces)] == 2)  # a closed curve
    np.testing.assert_array_equal(mesh.boundary_vertices, np.unique(faces))
    again = load_mesh(f"builtin:{name}")
    np.testing.assert_array_equal(again.points, mesh.points)
    np.testing.assert_array_equal(again.cells, mesh.cells)


def test_torus_volume_converges_to_the_analytic_one():
    """The polyhedral torus is inscribed in the round one (its cross-section a polygon
    with vertices on the circle): a little smaller, by O(h²)."""
    coarse, fine = load_mesh("builtin:torus"), load_mesh("builtin:torus", 80)
    err_coarse = (TORUS_VOLUME - coarse.measure) / TORUS_VOLUME
    err_fine = (TORUS_VOLUME - fine.measure) / TORUS_VOLUME
    assert 0 < err_coarse < 0.04
    assert 0 < err_fine < err_coarse / 2.5
    lo, hi = coarse.bbox
    np.testing.assert_allclose(hi, [0.8, 0.8, 0.2], atol=1e-12)
    np.testing.assert_allclose(lo, [-0.8, -0.8, -0.2], atol=1e-12)


def test_builtin_resolution():
    assert len(load_mesh("builtin:square", 4).cells) == 2 * 4 * 4
    bar = load_mesh("builtin:bar", 10)
    assert len(np.unique(bar.points[:, 0])) == 11 and len(np.unique(bar.points[:, 1])) == 3
    assert len(load_mesh("builtin:beam", 4).cells) == 6 * 4 * 2 * 2


@pytest.mark.parametrize("name", ["bar", "beam"])
def test_refined_keeps_vertices_and_measure(name):
    mesh = load_mesh(f"builtin:{name}", 8)
    fine = mesh.refined()
    n = len(mesh.points)
    np.testing.assert_array_equal(fine.points[:n], mesh.points)
    edges = np.unique(np.sort(np.concatenate([mesh.cells[:, [i, j]] for i in range(mesh.dim + 1)
                                                for j in range(i + 1, mesh.dim + 1)]), axis=1), axis=0)
    assert len(fine.points) == n + len(edges)
    assert len(fine.cells) == len(mesh.cells) * 2**mesh.dim
    assert np.all(fine.volumes > 0)
    assert fine.measure == pytest.approx(mesh.measure, rel=1e-12)
    assert fine.boundary_faces.shape[0] == mesh.boundary_faces.shape[0] * 2 ** (mesh.dim - 1)
    twice = mesh.refined(2)
    np.testing.assert_array_equal(twice.points[: len(fine.points)], fine.points)
    assert mesh.refined(0).cells.shape == mesh.cells.shape


def test_select_sides_and_box():
    beam = load_mesh("builtin:beam", 8)
    p = beam.points
    np.testing.assert_array_equal(beam.select("-x"), np.flatnonzero(p[:, 0] == 0.0))
    np.testing.assert_array_equal(beam.select("left"), beam.select("-x"))
    np.testing.assert_array_equal(beam.select("right"), np.flatnonzero(np.isclose(p[:, 0], 2.0)))
    np.testing.assert_array_equal(beam.select("bottom"), np.flatnonzero(np.isclose(p[:, 2], -0.25)))
    np.testing.assert_array_equal(beam.select("top"), beam.select("+z"))
    assert len(beam.select("-x")) == 3 * 3
    box = beam.select(box=[0, -1, -1, 0.5, 1, 0])
    np.testing.assert_array_equal(box, np.flatnonzero((p[:, 0] <= 0.5 + 1e-12) & (p[:, 2] <= 1e-12)))
    both = beam.select("-x", box=[-1, -1, -1, 1, 0, 1])
    assert set(both) == set(beam.select("-x")) & set(np.flatnonzero(p[:, 1] <= 1e-12))
    bar = load_mesh("builtin:bar", 10)
    np.testing.assert_array_equal(bar.select("bottom"), np.flatnonzero(np.isclose(bar.points[:, 1], -0.2)))
    with pytest.raises(MeshError, match="unknown side '\\+z'"):
        bar.select("+z")
    with pytest.raises(MeshError, match="did you mean 'left'"):
        bar.select("lefft")
    with pytest.raises(MeshError, match="box must be 4"):
        bar.select(box=[0, 0, 1])


@pytest.mark.parametrize("name", ["bar", "torus"])
def test_sample_volume_is_uniform(name):
    mesh = load_mesh(f"builtin:{name}")
    a, b = np.array([0.7, -1.3, 2.1][: mesh.dim]), 0.4
    x = sample_volume(mesh, 200_000, torch.Generator().manual_seed(3), dtype=torch.float64).numpy()
    assert x.shape == (200_000, mesh.dim)
    f = x @ a + b
    exact = _centroid(mesh) @ a + b
    assert abs(f.mean() - exact) < 4 * f.std() / math.sqrt(len(f))
    one = sample_volume(mesh, 1000, torch.Generator().manual_seed(5))
    two = sample_volume(mesh, 1000, torch.Generator().manual_seed(5))
    assert one.dtype == torch.get_default_dtype()
    assert torch.equal(one, two)
    lo, hi = mesh.bbox
    assert np.all(x >= lo - 1e-12) and np.all(x <= hi + 1e-12)


@pytest.mark.parametrize("name", ["square", "beam"])
def test_sample_surface_is_uniform_with_outward_normals(name):
    mesh = load_mesh(f"builtin:{name}")
    a, b = np.array([0.7, -1.3, 2.1][: mesh.dim]), -0.2
    x, n = sample_surface(mesh, 200_000, torch.Generator().manual_seed(4), dtype=torch.float64)
    x, n = x.numpy(), n.numpy()
    f = x @ a + b
    centres = mesh.points[mesh.boundary_faces].mean(axis=1)
    exact = (mesh.face_areas[:, None] * centres).sum(0) / mesh.face_areas.sum() @ a + b
    assert abs(f.mean() - exact) < 4 * f.std() / math.sqrt(len(f))
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0)
    lo, hi = mesh.bbox
    for axis in range(mesh.dim):  # a box: the normal is ±e_axis exactly on that face
        plus = n[:, axis] > 0.5
        minus = n[:, axis] < -0.5
        np.testing.assert_allclose(x[plus, axis], hi[axis], atol=1e-12)
        np.testing.assert_allclose(x[minus, axis], lo[axis], atol=1e-12)
    y, m = sample_surface(mesh, 100, torch.Generator().manual_seed(4), dtype=torch.float64)
    y2, m2 = sample_surface(mesh, 100, torch.Generator().manual_seed(4), dtype=torch.float64)
    assert torch.equal(y, y2) and torch.equal(m, m2)


@pytest.mark.parametrize("suffix", [".mesh", ".vtu", ".msh"])
@pytest.mark.parametrize("name", ["bar", "beam"])
def test_write_and_load_round_trip(tmp_path, name, suffix):
    mesh = load_mesh(f"builtin:{name}", 4)
    path = str(tmp_path / f"body{suffix}")
    write_mesh(mesh, path)
    back = load_mesh(path)
    assert back.dim == mesh.dim and back.source == path
    np.testing.assert_allclose(back.points, mesh.points, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(back.cells, mesh.cells)
    assert os.listdir(tmp_path) == [f"body{suffix}"]
    check_mesh(path)


def test_medit_with_boundary_triangles_and_flat_2d(tmp_path):
    beam = load_mesh("builtin:beam", 4)
    path = str(tmp_path / "insr.mesh")
    meshio.write(path, meshio.Mesh(beam.points, [("tetra", beam.cells), ("triangle", beam.boundary_faces),
                                                 ("vertex", np.array([[0], [3]]))]))
    back = load_mesh(path)
    assert back.dim == 3
    np.testing.assert_array_equal(back.cells, beam.cells)
    # A 2D mesh stored with z = const points, boundary lines, consistently clockwise.
    bar = load_mesh("builtin:bar", 6)
    pts = np.concatenate([bar.points, np.full((len(bar.points), 1), 0.25)], axis=1)
    cw = bar.cells[:, [0, 2, 1]]
    path = str(tmp_path / "flat.vtu")
    meshio.write(path, meshio.Mesh(pts, [("triangle", cw), ("line", bar.boundary_faces)]))
    flat = load_mesh(path)
    assert flat.dim == 2 and np.all(flat.volumes > 0)
    assert flat.measure == pytest.approx(0.8)
    # Points no cell uses are dropped, the others keep their order.
    extra = np.concatenate([bar.points, [[9.0, 9.0]]])
    path = str(tmp_path / "extra.vtu")
    meshio.write(path, meshio.Mesh(np.concatenate([extra, np.zeros((len(extra), 1))], axis=1), [("triangle", bar.cells)]))
    np.testing.assert_array_equal(load_mesh(path).points, bar.points)


def _hostile(tmp_path, kind: str) -> str:
    beam = load_mesh("builtin:beam", 2)
    pts, tets = beam.points.copy(), beam.cells.copy()
    path = str(tmp_path / f"{kind}.mesh")
    blocks = [("tetra", tets)]
    if kind == "missing":
        return str(tmp_path / "missing.mesh")
    if kind == "garbage":
        with open(path, "wb") as f:
            f.write(bytes(range(256)) * 8)
        return path
    if kind == "surface":
        blocks = [("triangle", beam.boundary_faces)]
    elif kind == "lines":
        blocks = [("line", beam.boundary_faces[:, :2])]
    elif kind == "stray":
        tri = np.array([[0, len(pts) - 1, len(pts) // 2]])
        faces = {tuple(sorted(f)) for t in tets for f in ((t[0], t[1], t[2]), (t[0], t[1], t[3]),
                                                           (t[0], t[2], t[3]), (t[1], t[2], t[3]))}
        assert tuple(sorted(tri[0])) not in faces
        blocks = [("tetra", tets), ("triangle", np.concatenate([beam.boundary_faces, tri]))]
    elif kind == "inverted":
        tets[5] = tets[5][[0, 1, 3, 2]]
    elif kind == "degenerate":
        blocks = [("tetra", np.concatenate([tets, [[0, 1, 2, 5]]]))]  # 0, 1, 2 lie on one line
    elif kind == "nan":
        pts[3, 1] = np.nan
    elif kind == "range":
        tets[2, 1] = len(pts) + 7
    elif kind == "hexes":
        blocks = [("hexahedron", np.array([[0, 1, 2, 3, 4, 5, 6, 7]]))]
    elif kind == "overlap":
        blocks = [("tetra", np.concatenate([tets, tets[:3]]))]
    meshio.write(path, meshio.Mesh(pts, blocks))
    return path


HOSTILE = {
    "missing": "no such file",
    "garbage": "cannot be read as a mesh",
    "surface": "no volume elements",
    "lines": "no volume elements",
    "stray": "mixed dimensions: 1 of 49 triangles are not faces",
    "inverted": "1 of 48 tetrahedra are inverted (negative volume)",
    "degenerate": "1 of 49 tetrahedra are degenerate (zero volume)",
    "nan": "non-finite coordinates",
    "range": "cell indices out of range",
    "hexes": "only simplices",
    "overlap": "not conforming",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_files_are_refused(tmp_path, kind):
    path = _hostile(tmp_path, kind)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(MeshError) as info:
        check_mesh(path)
    message = str(info.value)
    assert message.startswith(f"problem.mesh '{path}': ")
    assert HOSTILE[kind] in message
    assert "\n" not in message and len(message) < 400
    assert isinstance(info.value, InsrError)
    assert sorted(os.listdir(tmp_path)) == before


def test_bad_builtins_and_directory(tmp_path):
    with pytest.raises(MeshError, match=r"^problem.mesh 'builtin:tours': unknown builtin mesh 'tours'; known: .*"
                                        r"builtin:torus.*did you mean 'torus'\?"):
        load_mesh("builtin:tours")
    with pytest.raises(MeshError, match="resolution must be"):
        load_mesh("builtin:beam", -3)
    with pytest.raises(MeshError, match="is a directory"):
        load_mesh(str(tmp_path))


# --------------------------------------------------------------------------- rendering


def _falling(spec: str, resolution: int, steps: int = 2) -> xr.Dataset:
    mesh = load_mesh(spec, resolution)
    t = np.arange(steps) * 0.1
    drop = np.zeros(mesh.dim)
    drop[-1] = -1.0
    V = np.stack([mesh.points + drop * 2 * tk**2 for tk in t]).astype(np.float32)
    return xr.Dataset(
        {
            "mesh_points": (("vertex", "component"), mesh.points),
            "mesh_faces": (("face", "corner"), mesh.boundary_faces),
            "vertices": (("step", "vertex", "component"), V),
            "vertices_ref": (("step", "vertex", "component"), V + np.float32(0.005)),
        },
        coords={"step": np.arange(steps), "time": ("step", t)},
    )


def test_mesh_figure_3d_and_2d(tmp_path):
    import matplotlib.pyplot as plt

    from insr_hpc.pde.mesh_render import mesh_figure

    ds = _falling("builtin:beam", 4)
    fig = mesh_figure(ds, [0, 1], attrs={"ground": -0.3, "sphere": [1.0, 0.0, 0.6, 0.2]})
    panels = [ax for ax in fig.axes if ax.name == "3d"]
    assert len(panels) == 2
    for ax in panels:
        assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_zlabel()) == ("x", "y", "z")
        assert ax.get_zlim()[0] <= -0.3 and ax.get_zlim()[1] >= 0.8
    assert [ax.get_title() for ax in panels] == ["t = 0", "t = 0.1"]
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts[:2] == ["INSR surface", "FEM reference (wireframe)"] and any("ground" in t for t in texts)
    fig.savefig(tmp_path / "beam.png", dpi=40)
    plt.close(fig)

    ds2 = _falling("builtin:bar", 8, steps=3)
    ds2.attrs.update(ground="-0.3", sphere="[]")  # as stored: JSON text
    fig = mesh_figure(ds2, [0, -1], reference=False)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "x (1)" and ax.get_ylabel() == "y (1)"
    assert ax.get_ylim()[0] < -0.3
    assert fig.axes[1].get_ylabel() == "time t (1)"
    fig.savefig(tmp_path / "bar.png", dpi=40)
    plt.close(fig)
    with pytest.raises(InsrError, match="no step 7"):
        mesh_figure(ds2, [7])


def test_export_vtu(tmp_path):
    from insr_hpc.pde.mesh_render import export_vtu

    ds = _falling("builtin:beam", 4, steps=3)
    n_boundary = len(np.unique(ds["mesh_faces"].values))
    paths = export_vtu(ds, str(tmp_path / "beam.vtu"))
    assert [os.path.basename(p) for p in paths] == ["beam_0000.vtu", "beam_0001.vtu", "beam_0002.vtu"]
    back = meshio.read(paths[2])
    assert len(back.points) == n_boundary
    assert len(back.cells_dict["triangle"]) == ds.sizes["face"]
    disp = back.point_data["displacement"]
    np.testing.assert_allclose(disp[:, 2], -2 * 0.2**2, atol=1e-6)
    np.testing.assert_allclose(back.point_data["insr_fem_distance"], 0.005 * math.sqrt(3), rtol=1e-3)
    one = export_vtu(ds, str(tmp_path / "ref.vtk"), step=1, reference=True)
    assert one == [str(tmp_path / "ref.vtk")]
    assert len(meshio.read(one[0]).points) == n_boundary
    ds2 = _falling("builtin:bar", 8)
    (path,) = export_vtu(ds2, str(tmp_path / "bar.vtu"), step=-1)
    back = meshio.read(path)
    assert len(back.cells_dict["line"]) == ds2.sizes["face"] and back.points.shape[1] == 3
    assert not [f for f in os.listdir(tmp_path) if "partial" in f]
    with pytest.raises(InsrError, match="give a step"):
        export_vtu(ds, str(tmp_path / "x.vtk"))


def test_stratified_volume_sampling_is_unbiased_and_has_less_variance():
    import torch

    from insr_hpc.pde.mesh import load_mesh, sample_volume

    mesh = load_mesh("builtin:torus")
    a = np.array([0.3, -1.2, 0.7])
    exact = float(mesh.points[mesh.cells].mean(1) @ a @ mesh.volumes / mesh.measure)  # mean of a·X over the body
    means = {False: [], True: []}
    for seed in range(40):
        for strat in (False, True):
            x = sample_volume(mesh, 2000, torch.Generator().manual_seed(seed), dtype=torch.float64, stratified=strat)
            means[strat].append(float((x.numpy() @ a).mean()))
    iid, strat = np.array(means[False]), np.array(means[True])
    assert abs(strat.mean() - exact) < 4 * strat.std() / np.sqrt(len(strat)) + 1e-12
    assert strat.std() < 0.2 * iid.std(), (strat.std(), iid.std())
