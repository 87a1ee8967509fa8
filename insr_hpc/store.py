"""The per-run Zarr store (zarr 3): the contract with users and with ``analysis/``.

Layout (documented in docs/store.md, version in ``attrs["store_version"]``):
every array whose first dimension is a record dimension (``step``) is preallocated for
all steps (NaN / fill value until written). Version 1 has one chunk (file) per step.
Version 2 stores a small record array (≤ ``SINGLE_CHUNK_BYTES`` in all) as one chunk,
and a larger one as one chunk per step packed into zarr 3 *shards* (one file holds up
to ``SHARD_BYTES`` of consecutive steps), so a 240-step run is a few dozen files.

A step is complete only when ``committed[step] == 1``, written last. Writing one step
into a shard rewrites that whole shard file, and zarr's local store writes every file
to a temporary name and renames it: a crash leaves each shard either as it was or with
the new step, never torn, so a step never looks complete before all its data is there
(the same holds for a single-chunk array: its one file is rewritten by rename).
Version 1 stores (one file per chunk) are still read and resumed as they are.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr

STORE_VERSION = 2
READABLE_VERSIONS = (1, 2)
# A shard holds at most this many bytes of uncompressed consecutive steps. Writing a
# step rewrites its shard, so this bounds the write cost per step as well as the
# number of files (advection: every per-step array fits one shard).
SHARD_BYTES = 16 * 2**20
# A record array at most this big (all records, uncompressed) is one chunk in version 2:
# a per-step write rewrites it (atomically, as a shard), and reading the whole series
# decodes one chunk instead of one per step (the report reads every scalar series).
SINGLE_CHUNK_BYTES = 2**20

warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part", category=UserWarning)


@dataclass
class VarSpec:
    """One array: dims (first is usually ``step``), shape, dtype, CF attributes."""

    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str = "float32"
    attrs: dict[str, Any] = field(default_factory=dict)
    data: np.ndarray | None = None  # static arrays (coordinates) are written at creation
    chunks: tuple[int, ...] | None = None  # None: see StepStore.create

    @property
    def per_step(self) -> bool:
        return bool(self.dims) and self.dims[0] == "step"


class StoreFormatError(ValueError):
    """The directory is not a store this code can read (missing group, unknown version)."""


def record_shards(n_records: int, chunk: tuple[int, ...], dtype: str, shard_bytes: int = SHARD_BYTES) -> tuple[int, ...]:
    """Shard shape of a record array with one chunk per record: as many records as
    fit in ``shard_bytes`` (at least one, at most all)."""
    per_record = int(np.prod(chunk[1:], dtype=np.int64)) * (np.dtype(dtype).itemsize if dtype != "str" else 16)
    records = max(1, min(n_records, shard_bytes // max(1, per_record)))
    return (records, *chunk[1:])


def _nbytes(shape: tuple[int, ...], dtype: str) -> int:
    return int(np.prod(shape, dtype=np.int64)) * (np.dtype(dtype).itemsize if dtype != "str" else 16)


def _fill(dtype: str) -> Any:
    kind = np.dtype(dtype).kind
    return np.nan if kind == "f" else (0 if kind in "iub" else "")


class StepStore:
    """Create, reopen, write and commit one run's time-stepped store."""

    def __init__(self, path: str, group: zarr.Group):
        self.path = path
        self.group = group

    # -- creation / reopening -------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str,
        variables: Mapping[str, VarSpec],
        attrs: Mapping[str, Any],
        record_dims: tuple[str, ...] = ("step",),
        store_version: int = STORE_VERSION,
    ) -> StepStore:
        """Write the skeleton of a new store: every array, coordinates, attributes.

        An array whose first dimension is a record dimension (``step``; a reconstruction
        also uses ``epoch`` and ``time``) gets one chunk per record, other arrays (and
        the coordinate of a record dimension itself) one chunk, unless ``chunks`` says
        otherwise. A ``committed`` array along ``record_dims[0]`` is added if absent.
        Built in ``path + '.partial'`` and renamed, so a store either exists whole or not.
        ``store_version=1`` writes the unsharded layout (kept for comparisons and tests).
        """
        if store_version not in READABLE_VERSIONS:
            raise StoreFormatError(f"store_version {store_version} unknown (known: {READABLE_VERSIONS})")
        sharded = store_version >= 2
        tmp = path + ".partial"
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
        group = zarr.open_group(tmp, mode="w-", zarr_format=3)
        group.attrs.update({**attrs, "store_version": store_version})
        n_records = None
        time_along_step = "time" in variables and variables["time"].dims == ("step",)
        for name, spec in variables.items():
            record = bool(spec.dims) and spec.dims[0] in record_dims and name != spec.dims[0]
            chunks = spec.chunks or ((1, *spec.shape[1:]) if record else spec.shape)
            shards = None
            if sharded and record and spec.shape[0] > 1 and chunks[0] == 1 and spec.chunks is None:
                if _nbytes(spec.shape, spec.dtype) <= SINGLE_CHUNK_BYTES:
                    chunks = spec.shape
                else:
                    shards = record_shards(spec.shape[0], chunks, spec.dtype)
            attrs_ = dict(spec.attrs)
            if spec.per_step and name not in ("step", "time") and time_along_step:
                attrs_.setdefault("coordinates", "time")
            arr = group.create_array(
                name,
                shape=spec.shape,
                chunks=chunks,
                shards=shards,
                dtype=spec.dtype if spec.dtype != "str" else str,
                fill_value=_fill(spec.dtype) if spec.dtype != "str" else "",
                dimension_names=spec.dims,
                attributes=attrs_,
            )
            if spec.data is not None:
                arr[...] = spec.data
            if spec.dims and spec.dims[0] == record_dims[0]:
                n_records = spec.shape[0]
        if "committed" not in variables:
            group.create_array(
                "committed",
                shape=(n_records,),
                chunks=(n_records,) if sharded else (1,),
                dtype="uint8",
                fill_value=0,
                dimension_names=(record_dims[0],),
                attributes={"long_name": "1 once every array of this step is written"},
            )
        zarr.consolidate_metadata(tmp)
        os.replace(tmp, path)
        return cls.open(path)

    @classmethod
    def open(cls, path: str, mode: str = "r+") -> StepStore:
        """Open an existing store; StoreFormatError if it is not one or its version is unknown."""
        try:
            group = zarr.open_group(path, mode=mode, zarr_format=3)
        except (FileNotFoundError, ValueError, KeyError, TypeError) as exc:
            raise StoreFormatError(f"not a zarr 3 store ({type(exc).__name__}: {exc})") from exc
        version = group.attrs.get("store_version")
        if version not in READABLE_VERSIONS:
            raise StoreFormatError(f"store_version {version!r} unknown (this code reads {READABLE_VERSIONS})")
        return cls(path, group)

    @staticmethod
    def dataset(path: str):
        """The store as a lazy ``xarray.Dataset`` (what analysis reads); StoreFormatError
        if it is not a store or its version is unknown."""
        import xarray as xr

        if not os.path.isdir(path):
            raise StoreFormatError("not a directory")
        try:
            ds = xr.open_zarr(path, zarr_format=3)
        except Exception as exc:  # unreadable metadata: zarr and json raise many kinds
            raise StoreFormatError(f"not a readable zarr 3 store ({type(exc).__name__}: {exc})") from exc
        version = ds.attrs.get("store_version")
        if version not in READABLE_VERSIONS:
            raise StoreFormatError(f"store_version {version!r} unknown (this code reads {READABLE_VERSIONS})")
        return ds

    @property
    def version(self) -> int:
        return int(self.group.attrs["store_version"])

    @staticmethod
    def exists(path: str) -> bool:
        return os.path.exists(os.path.join(path, "zarr.json"))

    # -- progress -------------------------------------------------------------
    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.group.attrs)

    @property
    def n_steps(self) -> int:
        return int(self.group["committed"].shape[0])

    def committed(self) -> np.ndarray:
        return np.asarray(self.group["committed"][:]).astype(bool)

    def completed_steps(self) -> int:
        """Number of leading committed steps (a resumed run continues after these)."""
        done = self.committed()
        return int(np.argmin(done)) if not done.all() else len(done)

    # -- writing ----------------------------------------------------------------
    def write_step(self, step: int, values: Mapping[str, Any]) -> None:
        """Write step ``step`` of each named per-step array (not yet committed)."""
        for name, value in values.items():
            self.group[name][step] = np.asarray(value)

    def commit_step(self, step: int, values: Mapping[str, Any]) -> None:
        """Write a step's arrays, then mark it complete (the marker is written last)."""
        self.write_step(step, values)
        self.group["committed"][step] = 1

    def read_step(self, name: str, step: int) -> np.ndarray:
        return np.asarray(self.group[name][step])

    def finish(self, extra_attrs: Mapping[str, Any]) -> None:
        """Record run-level results and refresh consolidated metadata."""
        self.group.attrs.update(dict(extra_attrs))
        zarr.consolidate_metadata(self.path)


def json_safe(obj: Any) -> Any:
    """Round-trip through JSON so attributes hold plain types only."""
    return json.loads(json.dumps(obj, default=str))
