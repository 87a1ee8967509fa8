"""Synthetic fields with known structure, for testing reconstruction on a field nobody
tuned for: ``data.path=synthetic:NAME`` (optionally ``synthetic:NAME:SEED``), built in
memory on a regular lat/lon grid over time, deterministic by seed, with CF attributes.
The same field as a file (netCDF, or a Zarr store for a path ending in ``.zarr``):

    python -m insr_hpc.recon.synthetic bumps_front.nc [--name bumps_front] [--seed 0]
    insr-hpc run configs/reconstruct.yaml data.path=bumps_front.nc data.variable=temperature

``bumps_front`` (variable ``temperature``, K; 120 daily steps on a 32 × 48 grid over
20–60° N, 130–60° W):

    T(t, φ, λ) = 280 − 0.3 (φ − 40)                                  a meridional gradient
                 + Σ_k A_k exp(−[(φ − φ_k(t))² + (λ − λ_k(t))²] / (2 s_k²))   6 moving bumps
                 + F/2 · tanh((φ − φ_f(t) − m (λ + 95)) / δ)            a sharp front

with bump centres on circular orbits (advected by a rotating flow),
φ_k(t) = a_k + r_k sin(ω_k t + p_k), λ_k(t) = b_k + r_k cos(ω_k t + p_k), and the front
oscillating north–south, φ_f(t) = 40 + 6 sin(2π t / 60); δ = 0.6° is under the grid
spacing (≈ 1.3° × 1.5°), so the front is sharp at this resolution. The drawn parameters
(A, s, a, b, r, ω, p; F = −12 K, m = 0.15, δ) come from ``numpy.random.default_rng(seed)``
and are listed in the variable's ``comment``; :func:`bumps_front_params` returns them.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np

from insr_hpc.errors import InsrError

PREFIX = "synthetic:"
NAMES = ("bumps_front",)


def bumps_front_params(seed: int = 0) -> dict:
    """The parameters of ``bumps_front`` for ``seed`` (plain floats and lists)."""
    rng = np.random.default_rng(seed)
    k = 6
    sign = rng.choice([-1.0, 1.0], size=k)
    return {
        "nt": 120, "nlat": 32, "nlon": 48, "lat0": 20.0, "lat1": 60.0, "lon0": -130.0, "lon1": -60.0,
        "base": 280.0, "gradient": -0.3, "front_amp": -12.0, "front_slope": 0.15, "front_width": 0.6,
        "front_lat": 40.0, "front_swing": 6.0, "front_period": 60.0,
        "amp": (sign * rng.uniform(3.0, 8.0, k)).tolist(),
        "sigma": rng.uniform(3.0, 7.0, k).tolist(),
        "lat_c": rng.uniform(28.0, 52.0, k).tolist(),
        "lon_c": rng.uniform(-118.0, -72.0, k).tolist(),
        "radius": rng.uniform(3.0, 9.0, k).tolist(),
        "omega": (rng.choice([-1.0, 1.0], size=k) * rng.uniform(2 * math.pi / 90, 2 * math.pi / 30, k)).tolist(),
        "phase": rng.uniform(0.0, 2 * math.pi, k).tolist(),
    }


def bumps_front(p: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(time, lat, lon, values (T, H, W)) of the formula in the module docstring."""
    t = np.arange(p["nt"], dtype=np.float64)
    lat = np.linspace(p["lat0"], p["lat1"], p["nlat"])
    lon = np.linspace(p["lon0"], p["lon1"], p["nlon"])
    tt, la, lo = t[:, None, None], lat[None, :, None], lon[None, None, :]
    values = p["base"] + p["gradient"] * (la - 40.0) + 0.0 * tt * lo
    for amp, sigma, a, b, r, om, ph in zip(p["amp"], p["sigma"], p["lat_c"], p["lon_c"], p["radius"], p["omega"],
                                           p["phase"]):
        clat = a + r * np.sin(om * tt + ph)
        clon = b + r * np.cos(om * tt + ph)
        values = values + amp * np.exp(-((la - clat) ** 2 + (lo - clon) ** 2) / (2 * sigma ** 2))
    flat = p["front_lat"] + p["front_swing"] * np.sin(2 * math.pi * tt / p["front_period"])
    values = values + 0.5 * p["front_amp"] * np.tanh((la - flat - p["front_slope"] * (lo + 95.0)) / p["front_width"])
    return t, lat, lon, values


def parse(spec: str) -> tuple[str, int]:
    """``synthetic:NAME[:SEED]`` → (NAME, SEED); a one-line InsrError otherwise."""
    rest = spec[len(PREFIX):]
    name, _, seed = rest.partition(":")
    if name not in NAMES:
        from insr_hpc.errors import did_you_mean

        raise InsrError(f"data.path '{spec}': no synthetic field '{name}' (synthetic fields: {', '.join(NAMES)})"
                        f"{did_you_mean(name, list(NAMES))}")
    if seed == "":
        return name, 0
    try:
        value = int(seed)
    except ValueError:
        value = -1
    if value < 0:
        raise InsrError(f"data.path '{spec}': the seed after '{name}:' must be a non-negative integer, got '{seed}'")
    return name, value


def dataset(spec: str):
    """The synthetic field of ``spec`` as an xarray Dataset with CF attributes."""
    import xarray as xr

    name, seed = parse(spec)
    p = bumps_front_params(seed)
    t, lat, lon, values = bumps_front(p)
    comment = "; ".join(f"{k}={v}" for k, v in p.items())
    return xr.Dataset(
        {"temperature": (("time", "latitude", "longitude"), values.astype(np.float64), {
            "units": "K", "long_name": f"synthetic {name} (seed {seed}): advected Gaussian bumps plus a sharp front",
            "comment": comment})},
        coords={
            "time": ("time", t, {"units": "days since 2000-01-01 00:00:00", "calendar": "standard",
                                 "standard_name": "time", "axis": "T"}),
            "latitude": ("latitude", lat, {"units": "degrees_north", "standard_name": "latitude", "axis": "Y"}),
            "longitude": ("longitude", lon, {"units": "degrees_east", "standard_name": "longitude", "axis": "X"}),
        },
        attrs={"Conventions": "CF-1.8", "title": f"insr-hpc synthetic field {name}, seed {seed}",
               "source": "insr_hpc.recon.synthetic"},
    )


def write(spec: str, out: str) -> str:
    ds = dataset(spec)
    if out.rstrip("/").endswith(".zarr"):
        ds.to_zarr(out, mode="w")
    else:
        ds.to_netcdf(out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m insr_hpc.recon.synthetic",
                                 description="Write a synthetic field (netCDF, or Zarr for OUT ending in .zarr).")
    ap.add_argument("out")
    ap.add_argument("--name", default=NAMES[0], help=f"one of {', '.join(NAMES)}")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        write(f"{PREFIX}{args.name}:{args.seed}", args.out)
    except InsrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {os.path.abspath(args.out)} (variable temperature, K)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
