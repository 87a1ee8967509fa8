"""INSR incompressible Euler: Taylor–Green stays put, the projection keeps ∇·u small,
the store is what xarray expects, bad configs fail in one line."""

import os

import numpy as np
import pytest
import xarray as xr

from insr_hpc.cli import main
from insr_hpc.store import decode_attrs

FAST = [
    # the Adam path (configs/euler.yaml ships Gauss–Newton: tests/test_euler_gn.py)
    "optim.name=adam",
    "optim.lr=1e-4",
    "optim.init_lr=1e-4",
    "optim.rtol=1e-3",
    "optim.window=25",
    "network.depth=2",
    "network.width=32",
    "sampling.interior=2048",
    "sampling.boundary=128",
    "optim.init_max_iters=1500",
    "optim.max_iters=100",
    "time.steps=2",
    "problem.reference_resolution=64",
    "output.resolution=32",
    "output.figure_every=0",
]


@pytest.fixture(scope="module")
def taylor_green_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("euler")
    assert main(["run", "configs/euler.yaml", f"output.root={root}", *FAST]) == 0
    ds = xr.open_zarr(os.path.join(root, "euler", "r000", "store.zarr"))
    ds.attrs = decode_attrs(ds.attrs)  # nested attributes are JSON text in the store (netCDF-ready)
    return ds


def test_taylor_green_stays_within_three_percent_after_two_steps(taylor_green_store):
    ds = taylor_green_store
    # Taylor–Green is steady: the drift from u0 is the method's error. The fit of step 0
    # is ≈1 % with this small network; two split steps may add at most 2 % more.
    drift = ds["drift"].values
    assert drift[0] < 0.02
    assert drift[-1] < 0.03, drift
    # the grid reference (128² cubic, same Δt) agrees with the analytic field to < 0.5 %
    assert np.all(np.abs(ds["rel_l2"].values - drift) < 0.005)
    ke = ds["kinetic_energy"].values
    assert np.all(np.abs(ke / ds["kinetic_energy_ref"].values - 1) < 0.02)


def test_projected_divergence_stays_small(taylor_green_store):
    div = taylor_green_store["divergence"].values
    # RMS |∂u_x/∂x| of Taylor–Green is 0.5: the projected field's divergence stays below a
    # fifth of that and does not grow over the steps
    assert np.all(div < 0.1), div
    assert div[-1] < 1.3 * div[0] + 0.01, div


def test_store_has_fields_errors_and_substeps(taylor_green_store):
    ds = taylor_green_store
    assert ds["u"].dims == ("step", "y", "x", "component") and ds["u"].shape == (3, 32, 32, 2)
    assert ds["p"].dims == ("step", "y", "x")
    assert list(ds["substep"].values) == ["fit_u", "fit_p", "advect", "pressure", "project"]
    it = ds["iterations"].values
    assert np.all(it[1:, 2:] >= 1) and np.all(it[1:, :2] == -1)
    assert ds["weights"].shape[1] == sum(e["size"] for e in ds.attrs["param_layout"])
    assert {e["name"].split(".")[0] for e in ds.attrs["param_layout"]} == {"u", "p"}
    assert np.isfinite(ds["rel_l2"].values).all()


@pytest.mark.parametrize(
    "config, override, key",
    [
        ("configs/euler.yaml", "problem.initial=kelvin_helmholtz", "problem.initial"),
        ("configs/euler.yaml", "problem.pressure_form=weak", "problem.pressure_form"),
        ("configs/elasticity.yaml", "problem.density=-1", "problem.density"),
        ("configs/elasticity.yaml", "problem.fixed=none", "problem.fixed"),
        ("configs/elasticity.yaml", "problem.scenario=explode", "problem.scenario"),
    ],
)
def test_bad_case_config_is_a_one_line_error(config, override, key, tmp_path, capsys):
    assert main(["run", config, override, f"output.root={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"insr-hpc: error: {key}: ") and "\n" not in err, err
    assert not os.listdir(tmp_path)  # nothing half-written
