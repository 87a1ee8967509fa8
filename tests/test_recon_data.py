"""The field loader on small CF files written here, and its one-line errors."""

import numpy as np
import pytest
import xarray as xr

from insr_hpc.cli import main
from insr_hpc.errors import InsrError
from insr_hpc.recon.data import load_field


def write_sst(path, fmt="netcdf"):
    """(time, y, x) SST with land as _FillValue; dims named so that only attributes tell."""
    t, h, w = 5, 6, 8
    rng = np.random.default_rng(0)
    sst = 290.0 + rng.normal(size=(t, h, w)).astype(np.float32)
    sst[:, 1:3, 2:4] = np.nan  # land
    ds = xr.Dataset(
        {"sst": (("t", "rows", "cols"), sst, {"units": "K", "standard_name": "sea_surface_temperature"}),
         "other": (("t",), np.arange(t, dtype=np.float32))},
        coords={
            "t": ("t", np.arange(t) * 30.0, {"units": "days since 2000-01-01", "calendar": "360_day", "axis": "T"}),
            "rows": ("rows", np.linspace(-5, 5, h), {"units": "degrees_north"}),
            "cols": ("cols", np.linspace(0, 350, w), {"standard_name": "longitude", "units": "degrees_east"}),
        },
    )
    if fmt == "zarr":
        ds.to_zarr(path, mode="w")
    else:
        ds.to_netcdf(path, encoding={"sst": {"_FillValue": np.float32(1e20)}})
    return sst


@pytest.mark.parametrize("fmt", ["netcdf", "zarr"])
def test_loader_finds_dims_by_attributes_and_masks_land(tmp_path, fmt):
    path = str(tmp_path / ("f.nc" if fmt == "netcdf" else "f.zarr"))
    sst = write_sst(path, fmt)
    fld = load_field(path, "sst")
    assert fld.values.shape == (5, 6, 8)
    assert fld.dims == ("t", "rows", "cols")
    assert fld.valid.sum() == 6 * 8 - 4 and not fld.valid[1:3, 2:4].any()
    assert np.isnan(fld.values[:, ~fld.valid]).all()
    np.testing.assert_allclose(fld.values[:, fld.valid], sst[:, fld.valid], rtol=1e-6)
    assert fld.time_attrs["units"] == "days since 2000-01-01" and fld.time_attrs["calendar"] == "360_day"
    np.testing.assert_allclose(fld.time, np.arange(5) * 30.0)
    assert fld.lat_attrs["units"] == "degrees_north" and fld.units == "K"


def test_loader_reads_the_sample_climate_field():
    fld = load_field("sample:A1B_north_america.nc", "air_temperature")
    assert fld.values.shape == (240, 37, 49) and fld.valid.all() and fld.units == "K"
    sst = load_field("sample:ostia_monthly.nc", "surface_temperature")
    assert sst.values.shape == (54, 18, 432) and 0.6 < sst.valid.mean() < 0.9  # land masked


def test_bad_inputs_give_one_line_errors(tmp_path):
    path = str(tmp_path / "f.nc")
    write_sst(path)
    with pytest.raises(InsrError, match=r"data.path '.*nope.nc': no such file"):
        load_field(str(tmp_path / "nope.nc"), "sst")
    with pytest.raises(InsrError, match=r"data.variable 'tos': not in .* \(variables: other, sst\)"):
        load_field(path, "tos")
    with pytest.raises(InsrError, match=r"no lat or lon dimension"):
        load_field(path, "other")
    bad = tmp_path / "bad.nc"
    bad.write_text("not netcdf")
    with pytest.raises(InsrError, match=r"cannot read as a netCDF file"):
        load_field(str(bad), "sst")


def test_cli_reports_a_bad_data_path_on_one_line(tmp_path, capsys):
    code = main(["run", "configs/reconstruct.yaml", f"output.root={tmp_path}", "data.path=/no/such.nc", "train.epochs=1"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "data.path: '/no/such.nc': no such file" in err
    assert not list(tmp_path.iterdir())  # nothing written


def write_odd(path, *, units=True, descending=False, dateline=False, calendar="360_day", n_t=3, singleton=False,
              missing_value=False):
    """A small field with one of the oddities real CF files have."""
    h, w = 5, 6
    lat = np.linspace(10, 30, h)[:: -1 if descending else 1]
    lon = np.array([170, 175, 180, -175, -170, -165.0]) if dateline else np.linspace(200, 225, w)
    rng = np.random.default_rng(1)
    vals = (1.5 + rng.normal(size=(n_t, h, w))).astype(np.float32)
    vals[:, 0, 0] = -999.0 if missing_value else np.nan  # a point without data
    attrs = {"long_name": "anomaly"} | ({"units": "K"} if units else {})
    if missing_value:
        attrs["missing_value"] = np.float32(-999.0)
    dims = ("time", "lat", "lon")
    data = vals
    if singleton:
        dims = ("time", "depth", "lat", "lon")
        data = vals[:, None]
    coords = {
        "time": ("time", np.arange(n_t) * 30.0, {"units": "days since 1850-01-01", "calendar": calendar}),
        "lat": ("lat", lat, {"units": "degrees_north"}),
        "lon": ("lon", lon, {"units": "degrees_east"}),
    }
    if singleton:
        coords["depth"] = ("depth", [5.0], {"units": "m", "positive": "down"})
    xr.Dataset({"anom": (dims, data, attrs)}, coords=coords).to_netcdf(path)
    return vals


@pytest.mark.parametrize("odd", ["no_units", "descending", "dateline", "noleap", "one_step", "singleton", "missing_value"])
def test_loader_copes_with_real_file_oddities(tmp_path, odd):
    path = str(tmp_path / "odd.nc")
    kw = {"no_units": dict(units=False), "descending": dict(descending=True), "dateline": dict(dateline=True),
          "noleap": dict(calendar="noleap"), "one_step": dict(n_t=1), "singleton": dict(singleton=True),
          "missing_value": dict(missing_value=True)}[odd]
    vals = write_odd(path, **kw)
    fld = load_field(path, "anom")
    assert fld.values.shape == vals.shape
    assert not fld.valid[0, 0] and fld.valid.sum() == fld.valid.size - 1  # the point without data
    np.testing.assert_allclose(fld.values[:, fld.valid], vals[:, fld.valid], rtol=1e-6)
    assert fld.units == (None if odd == "no_units" else "K")
    if odd == "descending":
        assert fld.lat[0] > fld.lat[-1]
    if odd == "noleap":
        assert fld.time_attrs["calendar"] == "noleap"


def test_dateline_longitudes_become_contiguous_network_inputs():
    from insr_hpc.recon.trainer import make_problem

    lat = np.array([0.0, 10.0])
    lon = np.array([170, 175, 180, -175, -170.0])
    values = np.zeros((1, 2, 5))
    pb = make_problem(values, np.ones((1, 2, 5), bool), lat, lon)
    x_lon = pb.grid.reshape(2, 5, 2)[0, :, 1]
    np.testing.assert_allclose(x_lon, [0, 0.25, 0.5, 0.75, 1.0])  # evenly spaced across 180°


def test_a_field_without_units_says_so_in_the_store_and_runs_end_to_end(tmp_path):
    path = str(tmp_path / "odd.nc")
    write_odd(path, units=False, descending=True, dateline=True, calendar="noleap", singleton=True)
    out = tmp_path / "runs"
    code = main(["run", "configs/reconstruct.yaml", f"output.root={out}", f"data.path={path}", "data.variable=anom",
                 "device=cpu", "network.model=mmgn", "train.epochs=2", "train.eval_every=1", "task.ratio=0.5",
                 "train.validation=0", "train.select=last", "network.width=8", "network.layers=1", "network.latent=4", "output.figure_every=1"])
    assert code == 0
    ds = xr.open_zarr(str(out / "reconstruct" / "r000" / "store.zarr"))
    assert "units" not in ds.rmse.attrs and "no units attribute" in ds.rmse.attrs["comment"]
    assert "unknown" in ds.attrs["units"]
    assert ds.time.attrs.get("calendar", ds.time.encoding.get("calendar")) == "noleap"
    assert float(ds.latitude[0]) == 30.0 and np.isnan(ds.reconstruction.values[:, 0, 0]).all()


def test_sample_name_without_extension_or_misspelt_lists_the_samples(capsys, tmp_path):
    for name in ("A1B_north_america", "A1B_north_amrica.nc"):
        code = main(["run", "configs/reconstruct.yaml", f"output.root={tmp_path}", f"data.path=sample:{name}"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.count("\n") == 0
        assert "ostia_monthly.nc" in err and "did you mean 'A1B_north_america.nc'" in err
    assert not list(tmp_path.iterdir())


def test_a_wrong_variable_is_rejected_before_any_run_directory(capsys, tmp_path):
    code = main(["run", "configs/reconstruct.yaml", f"output.root={tmp_path}", "data.variable=air_temp"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert "data.variable: 'air_temp': not in" in err and "air_temperature" in err
    assert not list(tmp_path.iterdir())
