"""The reconstruction run's Zarr store (zarr 3), same conventions as :mod:`insr_hpc.store`.

Layout (``store_kind = "recon"``, version in ``store_version``; see docs/recon.md):

* coordinates ``time``, ``latitude``, ``longitude`` copied from the source with their
  units (and calendar), plus ``epoch``;
* per epoch (first dim ``epoch``, one chunk per epoch): ``loss`` (train L1, normalised),
  ``mse``, ``mse_unobserved``, ``rmse`` (NaN on epochs without a full-grid evaluation),
  ``lr``, ``seconds`` and ``committed`` (1 once the epoch's values are written, last);
* per time step (one chunk per step): ``observed`` (uint8 mask), ``target`` (the source
  field), ``reconstruction`` and ``error`` (reconstruction − target), both written at the
  end of training;
* ``weights`` (flat network parameters, layout in attrs ``param_layout``), ``latent_code``
  (time, latent) for auto-decoder models.

The store is built in ``path.partial`` and renamed, and ``attrs["complete"]`` becomes
true only after the final arrays are written, so a store is never half-made or mistaken
for a finished one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr

from insr_hpc.store import StepStore

STORE_VERSION = 1


@dataclass
class Array:
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str = "float32"
    attrs: dict[str, Any] = field(default_factory=dict)
    data: np.ndarray | None = None
    chunks: tuple[int, ...] | None = None  # None: one chunk per index of the first dim


def create_store(path: str, arrays: Mapping[str, Array], attrs: Mapping[str, Any]) -> StepStore:
    """Write the skeleton of a new store atomically; returns it opened for writing."""
    tmp = path + ".partial"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    group = zarr.open_group(tmp, mode="w-", zarr_format=3)
    group.attrs.update({**attrs, "store_version": STORE_VERSION, "store_kind": "recon", "complete": False})
    for name, spec in arrays.items():
        chunks = spec.chunks or ((1, *spec.shape[1:]) if spec.shape else ())
        kind = np.dtype(spec.dtype).kind
        arr = group.create_array(
            name, shape=spec.shape, chunks=chunks, dtype=spec.dtype,
            fill_value=np.nan if kind == "f" else 0, dimension_names=spec.dims, attributes=spec.attrs,
        )
        if spec.data is not None:
            arr[...] = spec.data
    zarr.consolidate_metadata(tmp)
    os.replace(tmp, path)
    return StepStore.open(path)
