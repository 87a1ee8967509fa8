"""INSR hyperelastic bar vs the FEM reference that minimises the same incremental potential."""

import os

import numpy as np
import pytest
import xarray as xr

from insr_hpc.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(tmp_path, *overrides):
    assert main(["run", "configs/elasticity.yaml", f"output.root={tmp_path}", "output.figure_every=0", *overrides]) == 0
    return xr.open_zarr(os.path.join(tmp_path, "elasticity", "r000", "store.zarr"))


def test_sagging_bar_tip_matches_fem_equilibrium(tmp_path):
    # Δt = 1000: the inertia term is ~1e-7 of the elastic one, so one step is the static
    # equilibrium; the FEM reference (64×8 cells) is solved to machine precision.
    # The shipped optimiser (Newton–CG, Gauss–Newton curvature, 6 + 3 averaged iterations).
    ds = run(tmp_path, "time.dt=1000", "time.steps=1")
    tip_ref = ds["points_ref"].values[1, 17]
    tip = ds["points"].values[1, 17]
    sag = 0.0 - tip_ref[1]
    assert 0.28 < sag < 0.36  # the FEM tip deflection of this bar
    # stated tolerance: the INSR tip within 3 % of the FEM tip deflection. The case's 64×8
    # reference is itself ~2.5 % stiffer than FEM 128×16 (linear triangles), which the INSR
    # tip matches to 0.5–1 % of the sag (benchmarks/elasticity.py)
    assert np.linalg.norm(tip - tip_ref) < 0.03 * sag, (tip, tip_ref)
    assert ds["rel_l2"].values[1] < 0.05


def test_released_bar_energy_stays_bounded_and_tracks_fem(tmp_path):
    ds = run(tmp_path, "problem.scenario=stretch", "time.dt=0.05", "time.steps=3")
    energy, energy_ref = ds["energy"].values, ds["energy_ref"].values
    assert energy[0] > 0.5  # the stretched bar stores elastic energy
    # implicit Euler dissipates: total energy never exceeds the initial one (+2 % MC slack)
    assert np.all(energy <= 1.02 * energy[0]), energy
    assert np.all(np.abs(energy - energy_ref) < 0.1 * energy_ref[0]), (energy, energy_ref)
    assert np.all(ds["max_err"].values < 0.05)


def test_first_order_integrator_with_variational_case_is_refused_at_config_time(tmp_path):
    from _small import cli

    res = cli("run", os.path.join(REPO, "configs", "elasticity.yaml"), "integrator.name=midpoint",
              f"output.root={tmp_path}")
    assert res.returncode == 2
    assert "integrator.name" in res.stderr and "variational" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not os.listdir(tmp_path)
    res = cli("run", os.path.join(REPO, "configs", "advection.yaml"), "integrator.name=variational",
              f"output.root={tmp_path}")
    assert res.returncode == 2 and "integrator.name" in res.stderr and "midpoint" in res.stderr
