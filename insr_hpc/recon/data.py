"""Read one gridded geophysical field (time, lat, lon) from a CF-style netCDF file or a
Zarr store through xarray.

Dimensions are found from their coordinate attributes (``standard_name``, ``units``,
``axis``), then by conventional names; missing values (``_FillValue``, NaN — land in an
SST field) become a ``valid`` mask. Time values are kept undecoded, with their CF
``units`` and ``calendar``, so that they can be written back unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from insr_hpc.errors import InsrError

SAMPLE_PREFIX = "sample:"
SYNTHETIC_PREFIX = "synthetic:"  # insr_hpc/recon/synthetic.py

_LAT_UNITS = {"degrees_north", "degree_north", "degree_n", "degrees_n", "degreen", "degreesn"}
_LON_UNITS = {"degrees_east", "degree_east", "degree_e", "degrees_e", "degreee", "degreese"}


@dataclass
class Field:
    """values (T, H, W) float64 in physical units, NaN where ``valid`` is False."""

    values: np.ndarray
    valid: np.ndarray  # (H, W) bool: grid points with data at every time step
    time: np.ndarray  # (T,) raw numbers in ``time_attrs['units']`` (or 0..T-1)
    lat: np.ndarray  # (H,) degrees_north
    lon: np.ndarray  # (W,) degrees_east
    variable: str
    attrs: dict[str, Any] = field(default_factory=dict)  # the variable's CF attributes
    time_attrs: dict[str, Any] = field(default_factory=dict)
    lat_attrs: dict[str, Any] = field(default_factory=dict)
    lon_attrs: dict[str, Any] = field(default_factory=dict)
    dims: tuple[str, str, str] = ("time", "latitude", "longitude")  # names in the source

    @property
    def units(self) -> str | None:
        """The variable's CF units; None when the source does not say."""
        units = self.attrs.get("units")
        return None if units is None or str(units).strip() == "" else str(units)


def resolve_path(path: str) -> str:
    """``sample:NAME`` → the file NAME of the iris-sample-data package; else unchanged."""
    if path.startswith(SAMPLE_PREFIX):
        try:
            import iris_sample_data
        except ImportError:
            raise InsrError(f"data.path '{path}': the iris-sample-data package is not installed") from None
        return os.path.join(iris_sample_data.path, path[len(SAMPLE_PREFIX):])
    return os.path.expanduser(path)


def check_path(path: str) -> str:
    """The real path of ``path``; a one-line InsrError when it does not exist (for a
    ``sample:`` name: the sample files there are, and the closest). A ``synthetic:NAME``
    spec (:mod:`insr_hpc.recon.synthetic`, built in memory) is returned unchanged once its
    name and seed are checked."""
    if path.startswith(SYNTHETIC_PREFIX):
        from insr_hpc.recon.synthetic import parse

        parse(path)
        return path
    real = resolve_path(path)
    if os.path.exists(real):
        return real
    if path.startswith(SAMPLE_PREFIX):
        from insr_hpc.errors import did_you_mean

        folder = os.path.dirname(real)
        samples = sorted(f for f in os.listdir(folder) if f.endswith((".nc", ".zarr"))) if os.path.isdir(folder) else []
        name = path[len(SAMPLE_PREFIX):]
        raise InsrError(f"data.path '{path}': no sample file '{name}' (netCDF samples: {', '.join(samples)})"
                        f"{did_you_mean(name, samples)}")
    raise InsrError(f"data.path '{path}': no such file or Zarr store")


def _open(path: str):
    import xarray as xr

    real = check_path(path)
    if path.startswith(SYNTHETIC_PREFIX):
        from insr_hpc.recon.synthetic import dataset

        return dataset(path)
    is_zarr = os.path.isdir(real) or real.rstrip("/").endswith(".zarr")
    try:
        if is_zarr:
            return xr.open_zarr(real, decode_times=False, chunks=None)  # numpy-backed, as open_dataset
        return xr.open_dataset(real, decode_times=False)
    except Exception as exc:  # xarray raises many types for unreadable files
        kind = "Zarr store" if is_zarr else "netCDF file"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InsrError(f"data.path '{path}': cannot read as a {kind} ({first})") from None


def _axis_of(name: str, attrs: dict[str, Any]) -> str | None:
    std = str(attrs.get("standard_name", "")).lower()
    units = str(attrs.get("units", "")).lower().replace(" ", "_")
    axis = str(attrs.get("axis", "")).upper()
    low = name.lower()
    if std in ("latitude", "grid_latitude") or units in _LAT_UNITS or axis == "Y":
        return "lat"
    if std in ("longitude", "grid_longitude") or units in _LON_UNITS or axis == "X":
        return "lon"
    if std == "time" or axis == "T" or " since " in str(attrs.get("units", "")):
        return "time"
    if low in ("lat", "latitude", "y", "nav_lat"):
        return "lat"
    if low in ("lon", "longitude", "x", "nav_lon"):
        return "lon"
    if low in ("time", "t"):
        return "time"
    return None


def _field_array(ds, path: str, variable: str):
    """The variable as a (time, lat, lon) DataArray, lazily, and its source dims by role."""
    if variable not in ds.data_vars:
        raise InsrError(_not_in_file(path, variable, ds.data_vars))
    da = ds[variable]
    roles: dict[str, str] = {}
    for dim in da.dims:
        attrs = dict(ds[dim].attrs) if dim in ds.variables else {}
        role = _axis_of(str(dim), attrs)
        if role and role not in roles:
            roles[role] = str(dim)
    missing = [r for r in ("lat", "lon") if r not in roles]
    if missing:
        raise InsrError(
            f"data.variable '{variable}' in '{path}': no {' or '.join(missing)} dimension among {tuple(map(str, da.dims))} "
            "(expected CF attributes standard_name/units/axis)"
        )
    extra = [str(d) for d in da.dims if d not in roles.values() and da.sizes[d] > 1]
    if extra:
        raise InsrError(f"data.variable '{variable}' in '{path}': unexpected dimension(s) {extra}; expected (time, lat, lon)")
    da = da.squeeze([d for d in da.dims if d not in roles.values()], drop=True)  # e.g. a height of length 1
    if "time" not in roles:
        da = da.expand_dims("time")
        roles["time"] = "time"
    return da.transpose(roles["time"], roles["lat"], roles["lon"]), roles


_CHECKED: dict[tuple, dict[str, str | None]] = {}


def check_field(path: str, variable: str) -> None:
    """Fail (one line) unless ``path`` holds ``variable`` with lat/lon dimensions; reads
    metadata only. Each file is opened once per modification time, and every variable of
    it checked then: a sweep (over variables too) opens it once."""
    real = check_path(path)
    key = (path, real, 0.0 if path.startswith(SYNTHETIC_PREFIX) else os.path.getmtime(real))
    if key not in _CHECKED:
        with _open(path) as ds:
            outcome: dict[str, str | None] = {}
            for name in map(str, ds.data_vars):
                try:
                    _field_array(ds, path, name)
                    outcome[name] = None
                except InsrError as exc:
                    outcome[name] = str(exc)
        _CHECKED[key] = outcome
    outcome = _CHECKED[key]
    if variable not in outcome:
        raise InsrError(_not_in_file(path, variable, outcome))
    if outcome[variable] is not None:
        raise InsrError(outcome[variable])


def _not_in_file(path: str, variable: str, known) -> str:
    from insr_hpc.errors import did_you_mean

    names = sorted(map(str, known))
    return f"data.variable '{variable}': not in '{path}' (variables: {', '.join(names)}){did_you_mean(variable, names)}"


def load_field(path: str, variable: str) -> Field:
    """The field ``variable`` of ``path`` as (time, lat, lon); one-line InsrError otherwise.

    ``_FillValue`` / ``missing_value`` points and NaN become invalid; latitudes may
    descend and longitudes run over −180…180 or 0…360 (kept as in the source); the time
    axis stays in its raw units and calendar (any CF calendar); a field without a time
    dimension is one time step; extra dimensions of length 1 are dropped."""
    ds = _open(path)
    da, roles = _field_array(ds, path, variable)
    values = np.asarray(da.values, dtype=np.float64)  # masked points (_FillValue) are already NaN
    valid = np.isfinite(values).all(axis=0)
    if not valid.any():
        raise InsrError(f"data.variable '{variable}' in '{path}': no grid point has data at every time step")
    values[:, ~valid] = np.nan

    def coord(role: str, n: int) -> tuple[np.ndarray, dict[str, Any]]:
        dim = roles[role]
        if dim in ds.variables:
            return np.asarray(ds[dim].values, dtype=np.float64), dict(ds[dim].attrs)
        return np.arange(n, dtype=np.float64), {}

    time, time_attrs = coord("time", values.shape[0])
    lat, lat_attrs = coord("lat", values.shape[1])
    lon, lon_attrs = coord("lon", values.shape[2])
    lat_attrs.setdefault("units", "degrees_north")
    lon_attrs.setdefault("units", "degrees_east")
    attrs = {k: v for k, v in da.attrs.items() if isinstance(v, str | int | float)}
    return Field(values, valid, time, lat, lon, variable, attrs, _plain(time_attrs), _plain(lat_attrs), _plain(lon_attrs),
                 (roles["time"], roles["lat"], roles["lon"]))


def _plain(attrs: dict[str, Any]) -> dict[str, Any]:
    keep = ("units", "calendar", "standard_name", "long_name", "axis")
    return {k: str(v) for k, v in attrs.items() if k in keep}
