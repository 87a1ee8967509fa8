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
