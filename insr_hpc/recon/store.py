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

from collections.abc import Mapping
from typing import Any

from insr_hpc.store import StepStore, VarSpec

def create_store(path: str, arrays: Mapping[str, VarSpec], attrs: Mapping[str, Any]) -> StepStore:
    """Write the skeleton of a new store atomically; returns it opened for writing."""
    return StepStore.create(
        path, arrays, {**attrs, "store_kind": "recon", "complete": False}, record_dims=("epoch", "time")
    )
