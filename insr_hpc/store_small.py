"""The store's fast reader: whole numeric arrays of a run store, without zarr (numpy,
numcodecs' zstd and google-crc32c only: the libraries zarr itself decodes with).

``insr-hpc status`` reads three or four small per-step arrays of every run
(``committed``, ``loss``, ``capped``, an error series). Through zarr that costs ~5 ms of
CPU a run plus ~0.3 s to import zarr; this reader ~0.6 ms a run (measured over 200
stores, docs/store.md), so a 2 000-run sweep's status takes about a second.

It is part of the store layer, beside :class:`insr_hpc.store.StepStore`, and decodes
exactly the layouts ``StepStore`` writes for numeric arrays (docs/store.md, "Fast
reader"):

* a regular chunk grid (format 1: one chunk per step; formats 2 and 3: one chunk for a
  small array) with the codec chain ``bytes`` (little-endian) → ``zstd`` (formats 1, 2)
  → ``crc32c`` (format 3);
* zarr 3 shards (``sharding_indexed``, index at the end, index codecs ``bytes`` →
  ``crc32c``) of such chunks (a per-step array over ``SINGLE_CHUNK_BYTES``);
* data types bool, (u)int8–64, float32/64; fill value a number, bool, ``NaN`` or
  ``±Infinity``; a chunk (or inner chunk) that was never written reads as the fill value.

Every crc32c is checked (a chunk's, a shard index's). Anything else — another codec,
big-endian bytes, another chunk key encoding, strings, a chunk of the wrong size —
raises (:class:`UnsupportedLayout` for a layout, ``ValueError`` naming the file for
damage), never decodes to something else. ``tests/test_status_fast.py`` writes every
small array ``StepStore`` writes, in every format, and checks this reader against zarr.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64")
_NO_CHUNK = 2**64 - 1  # a shard index entry (offset, nbytes) of an inner chunk never written
_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class UnsupportedLayout(ValueError):
    """The array is not stored in a layout this reader decodes (read it through zarr)."""


@dataclass(frozen=True)
class Chain:
    """A chunk's codecs: bytes (little-endian) → zstd? → crc32c?"""

    zstd: bool
    crc: bool


@dataclass(frozen=True)
class Layout:
    dtype: np.dtype
    shape: tuple[int, ...]
    chunk: tuple[int, ...]  # the regular grid's chunk (the shard, when sharded)
    fill: Any
    chain: Chain | None  # None: sharded
    inner: tuple[int, ...] | None = None  # sharded: the inner chunk shape
    inner_chain: Chain | None = None
    index_crc: bool = False


_LAYOUTS: dict[bytes, Layout | str] = {}  # zarr.json bytes → layout (or why not): a sweep's runs share them


def _chain(codecs: Any, itemsize: int) -> Chain:
    if not isinstance(codecs, list) or not all(isinstance(c, dict) for c in codecs):
        raise UnsupportedLayout("codecs is not a list of codecs")
    names = [c.get("name") for c in codecs]
    if names not in (["bytes"], ["bytes", "zstd"], ["bytes", "zstd", "crc32c"], ["bytes", "crc32c"]):
        raise UnsupportedLayout(f"codecs {names} (decoded here: bytes, zstd, crc32c)")
    endian = (codecs[0].get("configuration") or {}).get("endian")
    if endian != "little" and not (endian is None and itemsize == 1):
        raise UnsupportedLayout(f"bytes codec with endian {endian!r}")
    return Chain(zstd="zstd" in names, crc="crc32c" in names)


def _ints(value: Any, n: int | None = None) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(v, int) and v >= 0 for v in value) or (n is not None and len(value) != n):
        raise UnsupportedLayout(f"shape {value!r}")
    return tuple(value)


def _fill(value: Any, dtype: np.dtype) -> Any:
    if dtype.kind == "b" and isinstance(value, bool):
        return value
    if dtype.kind in "iu" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if dtype.kind == "f":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if value in _SPECIAL:
            return _SPECIAL[value]
    raise UnsupportedLayout(f"fill value {value!r} for {dtype}")


def parse_layout(raw: bytes) -> Layout:
    """The layout an array's ``zarr.json`` (its bytes) describes; UnsupportedLayout (or
    ValueError for JSON that does not parse) if this reader does not decode it."""
    if raw not in _LAYOUTS:
        try:
            _LAYOUTS[raw] = _parse(json.loads(raw))
        except UnsupportedLayout as exc:
            _LAYOUTS[raw] = str(exc)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            _LAYOUTS[raw] = f"not zarr 3 array metadata ({type(exc).__name__}: {exc})"
    layout = _LAYOUTS[raw]
    if isinstance(layout, str):
        raise UnsupportedLayout(layout)
    return layout


def _parse(meta: dict) -> Layout:
    if meta.get("zarr_format") != 3 or meta.get("node_type") != "array":
        raise UnsupportedLayout("not zarr 3 array metadata")
    if meta.get("data_type") not in DTYPES:
        raise UnsupportedLayout(f"data type {meta.get('data_type')!r}")
    dtype = np.dtype(meta["data_type"]).newbyteorder("<") if meta["data_type"] != "bool" else np.dtype(bool)
    shape = _ints(meta["shape"])
    grid = meta["chunk_grid"]
    if grid.get("name") != "regular":
        raise UnsupportedLayout(f"chunk grid {grid.get('name')!r}")
    chunk = _ints(grid["configuration"]["chunk_shape"], len(shape))
    if meta.get("chunk_key_encoding") != {"name": "default", "configuration": {"separator": "/"}}:
        raise UnsupportedLayout(f"chunk key encoding {meta.get('chunk_key_encoding')!r}")
    if meta.get("storage_transformers"):
        raise UnsupportedLayout("storage transformers")
    fill = _fill(meta["fill_value"], dtype)
    codecs = meta["codecs"]
    if isinstance(codecs, list) and len(codecs) == 1 and codecs[0].get("name") == "sharding_indexed":
        conf = codecs[0]["configuration"]
        inner = _ints(conf["chunk_shape"], len(shape))
        if any(c == 0 or s % c for s, c in zip(chunk, inner, strict=True)):
            raise UnsupportedLayout(f"inner chunks {inner} do not tile the shard {chunk}")
        if conf.get("index_location", "end") != "end":
            raise UnsupportedLayout(f"shard index at the {conf.get('index_location')}")
        index = _chain(conf.get("index_codecs"), 8)
        if index.zstd:
            raise UnsupportedLayout("compressed shard index")
        return Layout(dtype, shape, chunk, fill, None, inner, _chain(conf["codecs"], dtype.itemsize), index.crc)
    return Layout(dtype, shape, chunk, fill, _chain(codecs, dtype.itemsize))


def _crc_checked(data: bytes, what: str) -> bytes:
    """zarr's crc32c codec: the bytes, then their crc32c (uint32, little-endian)."""
    import google_crc32c

    if len(data) < 4 or np.uint32(google_crc32c.value(data[:-4])).tobytes() != data[-4:]:
        raise ValueError(f"{what} fails its crc32c checksum")
    return data[:-4]


def _decode(data: bytes, chain: Chain, dtype: np.dtype, shape: tuple[int, ...], what: str) -> np.ndarray:
    if chain.crc:
        data = _crc_checked(data, what)
    if chain.zstd:
        import numcodecs

        try:
            data = numcodecs.Zstd().decode(data)
        except Exception as exc:
            raise ValueError(f"{what} does not decode (zstd: {exc})") from None
    n = int(np.prod(shape, dtype=np.int64))
    if len(data) != n * dtype.itemsize:
        raise ValueError(f"{what} holds {len(data)} bytes, not the {n * dtype.itemsize} of a {shape} {dtype} chunk")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:  # never written (or all fill): the fill value
        return None


def read_small(path: str) -> np.ndarray:
    """The whole array at ``path`` (a zarr 3 array directory of a run store).

    UnsupportedLayout for a layout ``StepStore`` does not write (see the module);
    ValueError naming the file for a chunk or shard index that fails its crc32c or does
    not decode; OSError (e.g. FileNotFoundError) when ``zarr.json`` cannot be read."""
    with open(os.path.join(path, "zarr.json"), "rb") as fh:
        lay = parse_layout(fh.read())
    grid = tuple(-(-s // c) if c else 0 for s, c in zip(lay.shape, lay.chunk, strict=True))
    out = np.full(tuple(g * c for g, c in zip(grid, lay.chunk, strict=True)), lay.fill, dtype=lay.dtype)
    for idx in np.ndindex(*grid):
        file = os.path.join(path, "c", *map(str, idx))
        data = _read(file)
        if data is None:
            continue
        at = tuple(slice(i * c, (i + 1) * c) for i, c in zip(idx, lay.chunk, strict=True))
        if lay.chain is not None:
            out[at] = _decode(data, lay.chain, lay.dtype, lay.chunk, f"'{file}'")
        else:
            out[at] = _read_shard(data, lay, file)
    return out[tuple(slice(0, s) for s in lay.shape)]


def _read_shard(data: bytes, lay: Layout, file: str) -> np.ndarray:
    """A shard: its inner chunks, located by the index (offset, nbytes) pairs at its end."""
    per = tuple(s // c for s, c in zip(lay.chunk, lay.inner, strict=True))
    n = int(np.prod(per, dtype=np.int64))
    size = 16 * n + (4 if lay.index_crc else 0)
    if len(data) < size:
        raise ValueError(f"'{file}' is too short for its shard index")
    body, index = data[:-size], data[-size:]
    if lay.index_crc:
        index = _crc_checked(index, f"'{file}' (shard index)")
    entries = np.frombuffer(index, dtype="<u8").reshape(*per, 2)
    shard = np.full(lay.chunk, lay.fill, dtype=lay.dtype)
    for idx in np.ndindex(*per):
        offset, nbytes = (int(v) for v in entries[idx])
        if offset == _NO_CHUNK and nbytes == _NO_CHUNK:
            continue
        if offset + nbytes > len(body):
            raise ValueError(f"'{file}': shard index points past the end of the file")
        at = tuple(slice(i * c, (i + 1) * c) for i, c in zip(idx, lay.inner, strict=True))
        shard[at] = _decode(body[offset:offset + nbytes], lay.inner_chain, lay.dtype, lay.inner, f"'{file}' (inner chunk {idx})")
    return shard
