"""True / reconstructed / error maps of one time step, for TensorBoard."""

from __future__ import annotations

import numpy as np


def field_figure(fld, pred: np.ndarray, observed: np.ndarray, t: int = 0):
    """A matplotlib figure: target with observed points, reconstruction, error (time step t)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth, rec = fld.values[t], pred[t]
    lo, hi = np.nanmin(truth), np.nanmax(truth)
    err = rec - truth
    lim = float(np.nanmax(np.abs(err))) or 1.0
    # pcolormesh on the coordinates: right way up for descending latitudes, and
    # longitudes across the date line drawn contiguous
    lon = np.degrees(np.unwrap(np.radians(np.asarray(fld.lon, float))))
    lat = np.asarray(fld.lat, float)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    for ax, img, title, kw in (
        (axes[0], truth, "target (· observed)", dict(vmin=lo, vmax=hi, cmap="viridis")),
        (axes[1], rec, "reconstruction", dict(vmin=lo, vmax=hi, cmap="viridis")),
        (axes[2], err, f"error ({fld.units or 'units unknown'})", dict(vmin=-lim, vmax=lim, cmap="RdBu_r")),
    ):
        im = ax.pcolormesh(lon, lat, img, shading="nearest", **kw)
        ax.set_title(title)
        ax.set_xlabel("longitude")
        fig.colorbar(im, ax=ax)
    ys, xs = np.nonzero(observed[t])
    axes[0].scatter(lon[xs], lat[ys], s=3, c="k")
    axes[0].set_ylabel("latitude")
    return fig
