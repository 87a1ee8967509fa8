"""Reading a run store's small arrays fast, without zarr's machinery (and without torch).

``insr-hpc status`` reads three small arrays of every run (``committed``, ``loss`` and an
error series); through zarr that costs ~25 ms a run, 50 s for a 2 000-run sweep. An
array stored the way :class:`insr_hpc.store.StepStore` stores small per-step arrays —
one regular chunk encoded by ``bytes`` (little-endian), ``zstd`` and, from format 3,
``crc32c`` — is decoded here with the same libraries zarr uses (numcodecs' zstd,
google-crc32c); any other layout (format 1's chunk per step, shards, other codecs) is
read through zarr itself. ``tests/test_status_fast.py`` checks both readers agree.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

_METADATA: dict[bytes, Any] = {}  # zarr.json bytes → layout (or None): the runs of a sweep share them


def _codecs_plain(codecs: list) -> tuple[bool, bool] | None:
    """(zstd?, crc32c?) for [bytes], [bytes, zstd] or [bytes, zstd, crc32c] (little-endian
    or single-byte), else None."""
    names = [c.get("name") for c in codecs]
    if names not in (["bytes"], ["bytes", "zstd"], ["bytes", "zstd", "crc32c"]):
        return None
    if (codecs[0].get("configuration") or {}).get("endian", "little") != "little":
        return None
    return len(names) >= 2, len(names) == 3


def _plain_layout(raw: bytes) -> tuple[np.dtype, tuple[int, ...], Any, tuple[bool, bool]] | None:
    """(dtype, shape, fill value, (zstd?, crc32c?)) of a zarr 3 array stored as one chunk
    encoded by ``bytes`` (little-endian), optionally ``zstd`` and ``crc32c``; None for any
    other layout."""
    if raw not in _METADATA:
        layout = None
        try:
            meta = json.loads(raw)
            shape = tuple(meta["shape"])
            zstd = _codecs_plain(meta["codecs"])
            plain = (meta.get("zarr_format") == 3 and meta["chunk_grid"]["name"] == "regular"
                     and tuple(meta["chunk_grid"]["configuration"]["chunk_shape"]) == shape
                     and meta["chunk_key_encoding"] == {"name": "default", "configuration": {"separator": "/"}}
                     and zstd is not None and not meta.get("storage_transformers")
                     and isinstance(meta["data_type"], str) and isinstance(meta["fill_value"], int | float | str))
            if plain:
                fill = meta["fill_value"]
                layout = (np.dtype(meta["data_type"]).newbyteorder("<"), shape,
                          float(fill) if isinstance(fill, str) else fill, zstd)  # "NaN", "Infinity"
        except (ValueError, KeyError, TypeError, AttributeError):
            layout = None
        _METADATA[raw] = layout
    return _METADATA[raw]


def read_small(path: str) -> np.ndarray:
    """The whole array at ``path`` (a zarr 3 array directory). StoreFormatError-free:
    a chunk that fails its crc32c raises ValueError naming the file."""
    with open(os.path.join(path, "zarr.json"), "rb") as fh:
        layout = _plain_layout(fh.read())
    if layout is None:
        import zarr

        return np.asarray(zarr.open_array(path, mode="r")[:])
    dtype, shape, fill, (zstd, crc) = layout
    chunk = os.path.join(path, "c", *(["0"] * len(shape)))
    try:
        with open(chunk, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:  # never written: the fill value
        return np.full(shape, fill, dtype=dtype)
    if crc:  # zarr's crc32c codec: the chunk's bytes, then their crc32c (uint32, little-endian)
        import google_crc32c

        data, stored = data[:-4], data[-4:]
        if np.uint32(google_crc32c.value(data)).tobytes() != stored:
            raise ValueError(f"'{chunk}' fails its crc32c checksum")
    if zstd:
        import numcodecs

        data = numcodecs.Zstd().decode(data)
    return np.frombuffer(data, dtype=dtype).reshape(shape)
