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

**Integrity (version 3).** Every chunk carries a crc32c checksum (zarr 3's ``crc32c``
codec after zstd; shard indices carry their own), so a flipped or truncated chunk fails
to decode instead of reading as garbage. And every committed step has a digest in
``checksum`` (crc32 over that step's row of every record array, written just before the
``committed`` marker), so a chunk that went missing, which zarr would silently read as
its fill value, shows up too; arrays written once (coordinates, final results) have their
digests in ``attrs["checksums"]``. :meth:`StepStore.verify` checks all of it and names the
first committed step that is not intact; :meth:`StepStore.repair` un-commits that step
and every later one (and deletes the damaged chunk files), so a resumed run recomputes
them from the last verified step. Versions 1 and 2 have no checksums: only chunks that
fail to decode are found there.

**Metadata.** Every ``zarr.json`` is checked too: the root must be a zarr 3 group with
consolidated metadata, and each array's metadata (which never changes after creation:
arrays are preallocated, never resized) must match the sha256 recorded at creation in
``attrs["metadata_digests"]`` (added within version 3; stores created before it have
their array metadata parsed and compared with the consolidated copy only). Repair
restores a damaged array ``zarr.json`` from the consolidated copy in the root
``zarr.json`` when that copy matches the recorded digest; a root ``zarr.json`` that does
not parse, or an array whose metadata has no intact copy left, is refused with one line
naming the file (the data cannot be read without it).

**Attributes are netCDF-ready** (within version 3, no version change): ``xr.open_zarr(store)
.to_netcdf(path)`` works, so every root attribute is a string, a number or a list of
numbers. Nested values (dicts such as ``config``, lists holding strings or mappings, None)
are written as JSON text and their names listed in the root attribute ``json_attrs``
(space-separated); booleans are written as 0/1. :func:`decode_attrs` turns them back
into Python values (``StepStore.attrs`` and ``StepStore.read_attrs`` do it); a store
written before this holds the dicts themselves, which :func:`decode_attrs` passes through,
and :func:`to_netcdf_safe` writes such a dataset (or any other) to netCDF.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr

from insr_hpc.errors import InsrError

STORE_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
# Arrays of the bookkeeping itself (never part of a step's digest).
BOOKKEEPING = ("committed", "checksum")
EXTENDING = ".extending"  # a longer store being built beside the run's (StepStore.extend; RunDir.STORE_BUILDING)
PRE_EXTEND = ".pre-extend"  # the run's store, moved aside while the longer one replaces it (RunDir.STORE_ASIDE)
# A shard holds at most this many bytes of uncompressed consecutive steps. Writing a
# step rewrites its shard, so this bounds the write cost per step as well as the
# number of files (advection: every per-step array fits one shard).
SHARD_BYTES = 16 * 2**20
# A record array at most this big (all records, uncompressed) is one chunk in version 2:
# a per-step write rewrites it (atomically, as a shard), and reading the whole series
# decodes one chunk instead of one per step (the report reads every scalar series).
SINGLE_CHUNK_BYTES = 2**20
# Root attribute: array name → sha256 of its metadata (canonical JSON), recorded at creation.
METADATA_DIGESTS = "metadata_digests"
# Root attribute: space-separated names of the attributes stored as JSON text (decode_attrs).
JSON_ATTRS = "json_attrs"
# The CF version the stores (and the report's sweep.zarr) follow.
CONVENTIONS = "CF-1.10"

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
    fill: Any = None  # fill value of unwritten elements; None: NaN for floats, 0 for integers

    @property
    def per_step(self) -> bool:
        return bool(self.dims) and self.dims[0] == "step"


class StoreFormatError(InsrError, ValueError):
    """The directory is not a store this code can read (missing group, unknown version)."""


def _codecs(version: int) -> dict[str, Any]:
    if version < 3:
        return {}
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return {"compressors": (ZstdCodec(level=0), Crc32cCodec())}


def digest(arrays: list[np.ndarray]) -> int:
    """crc32 of the arrays' bytes, in order (the per-step and per-array checksums)."""
    crc = 0
    for a in arrays:
        a = np.asarray(a)
        if a.dtype.kind in "OUST":  # strings: their UTF-8 text, NUL-separated
            data = "\0".join(str(x) for x in a.reshape(-1)).encode()
        else:
            data = np.ascontiguousarray(a).view(np.uint8).reshape(-1)
        crc = zlib.crc32(data, crc)
    return crc & 0xFFFFFFFF


def metadata_digest(meta: Mapping[str, Any]) -> str:
    """sha256 (hex) of an array's metadata as canonical JSON (sorted keys, no spaces):
    the same for the array's own ``zarr.json`` and its copy in the consolidated metadata."""
    text = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _array_meta_problem(meta: Any, expected: str | None) -> str | None:
    """Why ``meta`` (parsed JSON) is not valid zarr 3 array metadata, or does not match
    the digest recorded at creation; None if it is fine."""
    if not isinstance(meta, dict) or meta.get("zarr_format") != 3 or meta.get("node_type") != "array":
        return "is not zarr 3 array metadata"
    if expected is not None and metadata_digest(meta) != expected:
        return "differs from the metadata recorded at creation (sha256 mismatch)"
    try:
        from zarr.core.metadata.v3 import ArrayV3Metadata

        ArrayV3Metadata.from_dict(dict(meta))
    except ImportError:  # pragma: no cover - zarr moved it: the digest (if any) still holds
        pass
    except Exception as exc:
        return f"not valid zarr 3 array metadata ({type(exc).__name__}: {_first(exc)[:80]})"
    if not meta.get("dimension_names"):
        return "has no dimension_names"
    return None


@dataclass
class MetadataProblem:
    """One damaged ``zarr.json``: ``file`` relative to the store; ``array`` (None: the
    root); ``restore``: an intact copy of the array's metadata to write back (from the
    consolidated metadata); ``reconsolidate``: the consolidated copy is the damaged one."""

    file: str
    why: str
    array: str | None = None
    restore: dict[str, Any] | None = None
    reconsolidate: bool = False

    def line(self) -> str:
        return f"'{self.file}': {self.why}"


def check_metadata(path: str) -> tuple[list[MetadataProblem], bool]:
    """Parse every ``zarr.json`` of the store at ``path`` and check it against the format:
    (problems, whether the store records metadata digests). Reads metadata files only."""
    root_file = os.path.join(path, "zarr.json")
    try:
        with open(root_file, encoding="utf-8") as fh:
            root = json.load(fh)
    except OSError as exc:
        return [MetadataProblem("zarr.json", f"cannot be read ({exc.strerror or exc})")], False
    except ValueError as exc:
        return [MetadataProblem("zarr.json", f"is not valid JSON ({_first(exc)[:80]})")], False
    if not isinstance(root, dict) or root.get("zarr_format") != 3 or root.get("node_type") != "group":
        return [MetadataProblem("zarr.json", "is not zarr 3 group metadata")], False
    attrs = root.get("attributes")
    if not isinstance(attrs, dict):
        return [MetadataProblem("zarr.json", "has no attributes")], False
    problems: list[MetadataProblem] = []
    digests = decode_attrs(attrs).get(METADATA_DIGESTS) if METADATA_DIGESTS in attrs else None
    if digests is not None and not (isinstance(digests, dict) and all(isinstance(v, str) for v in digests.values())):
        problems.append(MetadataProblem("zarr.json", f"attribute {METADATA_DIGESTS} is not a name → sha256 map"))
        digests = None
    consolidated = root.get("consolidated_metadata")
    entries = consolidated.get("metadata") if isinstance(consolidated, dict) else None
    if not isinstance(entries, dict):
        problems.append(MetadataProblem("zarr.json", "has no consolidated metadata", reconsolidate=True))
        entries = {}
    on_disk = {d for d in os.listdir(path) if os.path.exists(os.path.join(path, d, "zarr.json"))}
    for name in sorted(set(digests or {}) | set(entries) | on_disk):
        rel = f"{name}/zarr.json"
        expected = (digests or {}).get(name)
        if digests is not None and expected is None:
            problems.append(MetadataProblem(rel, "holds an array not recorded at creation (no metadata digest)", name))
            continue
        try:
            with open(os.path.join(path, name, "zarr.json"), encoding="utf-8") as fh:
                meta = json.load(fh)
            why = _array_meta_problem(meta, expected)
        except FileNotFoundError:
            meta, why = None, "is missing"
        except OSError as exc:
            meta, why = None, f"cannot be read ({exc.strerror or exc})"
        except ValueError as exc:
            meta, why = None, f"is not valid JSON ({_first(exc)[:80]})"
        copy = entries.get(name)
        copy_why = "missing from the consolidated metadata" if copy is None else _array_meta_problem(copy, expected)
        if why is None and copy_why is None and expected is None and metadata_digest(meta) != metadata_digest(copy):
            copy_why = "differs from the array's own zarr.json in the consolidated metadata"
        if why is not None:
            if copy_why is None:
                problems.append(MetadataProblem(rel, why, name, restore=copy))
            else:
                problems.append(MetadataProblem(rel, f"{why}; its consolidated copy: {copy_why}", name))
        elif copy_why is not None and entries:
            problems.append(MetadataProblem("zarr.json", f"consolidated metadata of '{name}': {copy_why}", name,
                                            reconsolidate=True))
    return problems, digests is not None


@dataclass
class Verification:
    """What :meth:`StepStore.verify` found. ``first_bad``: the first committed step that
    is not intact (None: every committed step is); ``damaged``: array → storage units
    (``(first, stop)`` record ranges) whose files are missing or fail to decode."""

    path: str
    version: int
    committed: int  # leading committed steps as recorded
    first_bad: int | None = None
    problems: list[str] = field(default_factory=list)
    damaged: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    static_damage: list[str] = field(default_factory=list)  # arrays written at creation that are damaged
    final_damage: list[str] = field(default_factory=list)  # final results (written at the end) damaged
    checksummed: bool = True
    metadata: list[MetadataProblem] = field(default_factory=list)  # damaged zarr.json files
    metadata_digested: bool = True  # the store records its arrays' metadata digests

    @property
    def ok(self) -> bool:
        return (self.first_bad is None and not self.damaged and not self.static_damage and not self.final_damage
                and not self.metadata)

    def line(self) -> str:
        if self.ok:
            how = "checksums match" if self.checksummed else f"decodes (format v{self.version} has no checksums)"
            if self.checksummed and not self.metadata_digested:
                how += f" (metadata parsed; no {METADATA_DIGESTS}: store created before they were recorded)"
            return f"ok: {self.path}: {self.committed} committed step(s), {how}"
        return f"DAMAGED: {self.path}: " + "; ".join(self.problems[:4]) + (" …" if len(self.problems) > 4 else "")


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
        codecs = _codecs(store_version)
        tmp = path + ".partial"
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
        group = zarr.open_group(tmp, mode="w-", zarr_format=3)
        group.attrs.update(encode_attrs({"Conventions": CONVENTIONS, **attrs, "store_version": store_version}))
        n_records = None
        checksums: dict[str, int] = {}
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
                fill_value=(_fill(spec.dtype) if spec.fill is None else spec.fill) if spec.dtype != "str" else "",
                dimension_names=spec.dims,
                attributes=attrs_,
                **codecs,
            )
            if spec.data is not None:
                arr[...] = spec.data
                if store_version >= 3:
                    checksums[name] = digest([np.asarray(arr[...])])
            if spec.dims and spec.dims[0] == record_dims[0]:
                n_records = spec.shape[0]
        bookkeeping = {"committed": ("uint8", "1 once every array of this step is written")}
        if store_version >= 3:
            bookkeeping["checksum"] = ("uint32", "crc32 of this step's row of every record array (0: not committed)")
        for name, (dtype, long_name) in bookkeeping.items():  # units "1": a 0/1 flag, a checksum
            if name in variables:
                continue
            group.create_array(
                name,
                shape=(n_records,),
                chunks=(n_records,) if sharded else (1,),
                dtype=dtype,
                fill_value=0,
                dimension_names=(record_dims[0],),
                attributes={"long_name": long_name, "units": "1"},
                **codecs,
            )
        new = cls(tmp, group)
        if checksums:
            new.update_attrs({"checksums": checksums})
        new.update_attrs({"record_dim": record_dims[0]})
        if store_version >= 3:  # array metadata never changes after this: record what it must stay
            digests = {}
            for name in sorted(group.array_keys()):
                with open(os.path.join(tmp, name, "zarr.json"), encoding="utf-8") as fh:
                    digests[name] = metadata_digest(json.load(fh))
            new.update_attrs({METADATA_DIGESTS: digests})
        zarr.consolidate_metadata(tmp)
        os.replace(tmp, path)
        return cls.open(path)

    @classmethod
    def extend(cls, old: StepStore, variables: Mapping[str, VarSpec], attrs: Mapping[str, Any],
               record_dims: tuple[str, ...] = ("step",)) -> StepStore:
        """The store at ``old.path`` made longer (a run whose ``time.steps`` was raised).

        Built beside it (``path + EXTENDING``) as a fresh store of ``variables``, exactly
        the layout a run of the new length gets; every committed record of ``old`` is
        copied in through :meth:`commit_step`, so values, digests and markers are bitwise
        the original's; then swapped in: ``path`` → ``path + PRE_EXTEND``, the new store →
        ``path``, the old one removed. A crash at any point leaves one whole store that
        :meth:`recover` puts back in place."""
        path = old.path
        done = old.completed_steps()
        tmp = path + EXTENDING
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
        history = [*old.attrs.get("history", []), f"extended from {old.n_steps} to "
                   f"{variables[record_dims[0]].shape[0] if record_dims[0] in variables else '?'} records "
                   f"after {done} committed, {time.strftime('%Y-%m-%dT%H:%M:%S')}"]
        new = cls.create(tmp, variables, {**attrs, "history": history}, record_dims)
        names = [n for n in old.record_arrays() if n in new.group]
        for step in range(done):
            new.commit_step(step, {n: old.read_step(n, step) for n in names})
        os.replace(path, path + PRE_EXTEND)
        os.replace(tmp, path)
        shutil.rmtree(path + PRE_EXTEND)
        return cls.open(path)

    @staticmethod
    def interrupted(path: str) -> bool:
        """Did a crash cut an extension short (see :meth:`recover`)?"""
        return os.path.isdir(path + PRE_EXTEND) or os.path.isdir(path + EXTENDING)

    @staticmethod
    def readable_path(path: str) -> str:
        """Where the store's metadata is now: ``path``, or the copy an interrupted
        extension left aside (read-only callers; :meth:`recover` moves it back)."""
        if not StepStore.exists(path) and StepStore.exists(path + PRE_EXTEND):
            return path + PRE_EXTEND
        return path

    @staticmethod
    def recover(path: str) -> str | None:
        """Finish or undo an extension (:meth:`extend`) that a crash interrupted; says
        what it did, or None when there was nothing to do."""
        before, building = path + PRE_EXTEND, path + EXTENDING
        what = None
        if os.path.isdir(before):
            if StepStore.exists(path):  # the swap was done: only the old copy was left
                shutil.rmtree(before)
            else:  # the old store was moved aside but the new one not yet put in place
                os.replace(before, path)
                what = "an extension of the store was interrupted: the store before it was put back"
        if os.path.isdir(building):
            shutil.rmtree(building)
            what = what or "an interrupted extension's partial store was removed"
        return what

    @classmethod
    def open(cls, path: str, mode: str = "r+") -> StepStore:
        """Open an existing store; StoreFormatError if it is not one or its version is unknown."""
        try:
            group = zarr.open_group(path, mode=mode, zarr_format=3)
        except (FileNotFoundError, ValueError, KeyError, TypeError) as exc:
            if os.path.exists(os.path.join(path, "zarr.json")):  # name the file that does not parse
                root = check_metadata(path)[0]
                if root and root[0].file == "zarr.json":
                    raise StoreFormatError(f"store '{path}': {root[0].line()}") from None
            raise StoreFormatError(f"store '{path}': unreadable metadata ({type(exc).__name__}: {_first(exc)})") from None
        except OSError as exc:
            raise StoreFormatError(f"store '{path}': cannot read ({exc.strerror or exc})") from None
        version = group.attrs.get("store_version")
        if version not in READABLE_VERSIONS:
            raise StoreFormatError(f"store '{path}': store_version {version!r} unknown (this code reads {READABLE_VERSIONS})")
        for name in ("committed",):
            if name not in group:
                raise StoreFormatError(f"store '{path}': array '{name}' missing (not a run store, or damaged)")
        return cls(path, group)

    @staticmethod
    def read_attrs(path: str) -> dict[str, Any]:
        """The store's attributes (decoded: :func:`decode_attrs`) from its root ``zarr.json``
        alone (cheap: no arrays are opened); StoreFormatError naming the store when the
        file is unreadable."""
        meta_path = os.path.join(path, "zarr.json")
        try:
            with open(meta_path, encoding="utf-8") as fh:
                meta = json.load(fh)
        except OSError as exc:
            raise StoreFormatError(f"store '{path}': cannot read zarr.json ({exc.strerror or exc})") from None
        except ValueError as exc:
            raise StoreFormatError(f"store '{path}': zarr.json is not valid JSON ({_first(exc)})") from None
        attrs = meta.get("attributes") if isinstance(meta, dict) else None
        if not isinstance(attrs, dict):
            raise StoreFormatError(f"store '{path}': zarr.json has no attributes (not a run store)")
        return decode_attrs(attrs)

    @staticmethod
    def dataset(path: str):
        """The store as a lazy ``xarray.Dataset`` (what analysis reads), its attributes as
        stored (netCDF-ready: ``decode_attrs(ds.attrs)`` for the nested ones);
        StoreFormatError if it is not a store or its version is unknown."""
        import xarray as xr

        if not os.path.isdir(path):
            raise StoreFormatError(f"store '{path}': not a directory")
        try:
            ds = xr.open_zarr(path, zarr_format=3, chunks=None)  # lazy numpy, not dask: reads what it indexes
        except Exception as exc:  # unreadable metadata: zarr and json raise many kinds
            raise StoreFormatError(f"store '{path}': not a readable zarr 3 store ({type(exc).__name__}: {_first(exc)})") from None
        version = ds.attrs.get("store_version")
        if version not in READABLE_VERSIONS:
            raise StoreFormatError(f"store '{path}': store_version {version!r} unknown (this code reads {READABLE_VERSIONS})")
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
        """The root attributes, decoded (:func:`decode_attrs`)."""
        return decode_attrs(dict(self.group.attrs))

    def update_attrs(self, values: Mapping[str, Any]) -> None:
        """Set root attributes, netCDF-ready (:func:`encode_attrs`): nested values as JSON
        text, their names added to ``json_attrs`` (and removed for plain ones)."""
        current = self.group.attrs.get(JSON_ATTRS)
        self.group.attrs.update(encode_attrs(values, current if isinstance(current, str) else ""))

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
        """Write a step's arrays, then its digest, then mark it complete (the marker last).

        Arrays along the record dimension that ``values`` leaves out keep their fill value
        for this step; the digest covers them as such."""
        self.write_step(step, values)
        if "checksum" in self.group:
            rows = []
            for name in self.record_arrays():
                arr = self.group[name]
                if name in values:
                    row = np.asarray(values[name], dtype=arr.dtype).reshape(arr.shape[1:])
                else:
                    row = np.full(arr.shape[1:], arr.fill_value, dtype=arr.dtype)
                rows.append(row)
            self.group["checksum"][step] = digest(rows)
        self.group["committed"][step] = 1

    def record_arrays(self) -> list[str]:
        """Arrays along the record dimension whose rows a step writes, sorted by name."""
        dim = self.record_dim
        out = []
        for name, arr in self.group.arrays():
            dims = arr.metadata.dimension_names or ()
            if dims and dims[0] == dim and name != dim and name not in BOOKKEEPING and not self._static(name):
                out.append(name)
        return sorted(out)

    @property
    def record_dim(self) -> str:
        dim = self.group.attrs.get("record_dim")
        if dim:
            return str(dim)
        dims = self.group["committed"].metadata.dimension_names or ("step",)
        return str(dims[0])

    def _attr(self, name: str) -> Any:
        """One root attribute, decoded (None if absent)."""
        return decode_attrs({k: self.group.attrs.get(k) for k in (name, JSON_ATTRS) if k in self.group.attrs}).get(name)

    def _static(self, name: str) -> bool:
        """Written once at creation (a coordinate along the record dimension, e.g. ``time``)."""
        return name in (self._attr("checksums") or {}) and name not in (self._attr("final") or ())

    def write_arrays(self, values: Mapping[str, Any]) -> None:
        """Write whole arrays that are not per step (final results) and record their digests."""
        sums = dict(self._attr("checksums") or {})
        for name, value in values.items():
            self.group[name][...] = value
            if "checksum" in self.group:
                sums[name] = digest([np.asarray(self.group[name][...])])
        if "checksum" in self.group:
            final = sorted(set(self._attr("final") or ()) | set(values))
            self.update_attrs({"checksums": sums, "final": final})

    def mark_failed(self, reason: str) -> None:
        """Record why the run failed (``attrs["failure"]``); a later complete run clears it."""
        self.update_attrs({"failure": reason, "complete": False})
        zarr.consolidate_metadata(self.path)

    def read_step(self, name: str, step: int) -> np.ndarray:
        return np.asarray(self.group[name][step])

    def read_records(self, name: str, stop: int) -> np.ndarray:
        """The first ``stop`` records of array ``name`` (e.g. the steps committed so far)."""
        return np.asarray(self.group[name][:stop])

    def names(self) -> set[str]:
        """The store's array names (a store made by an older version may lack some)."""
        return set(self.group.array_keys())

    def __contains__(self, name: str) -> bool:
        return name in self.group

    def finish(self, extra_attrs: Mapping[str, Any]) -> None:
        """Record run-level results and refresh consolidated metadata."""
        self.update_attrs({"failure": "", **dict(extra_attrs)})
        zarr.consolidate_metadata(self.path)

    # -- integrity ------------------------------------------------------------------
    def _units(self, name: str) -> list[tuple[int, int]]:
        """Record ranges ``(first, stop)`` stored together in one file (a chunk or a shard)."""
        arr = self.group[name]
        n = arr.shape[0]
        per = (arr.shards or arr.chunks)[0]
        return [(a, min(n, a + per)) for a in range(0, n, per)]

    def _unit_file(self, name: str, unit: int) -> str:
        arr = self.group[name]
        return os.path.join(self.path, name, "c", str(unit), *(["0"] * (arr.ndim - 1)))

    def verify(self) -> Verification:
        """Check every ``zarr.json`` (parses, is what the format promises, array metadata
        matches its digest), every chunk of the committed steps (decodes, checksum matches
        its digest) and every array written once; nothing is changed."""
        committed_rec = 0
        report = Verification(self.path, self.version, 0, checksummed="checksum" in self.group)
        report.metadata, digested = check_metadata(self.path)
        report.metadata_digested = digested or self.version < 3
        report.problems.extend(p.line() for p in report.metadata)
        bad_steps: list[int] = []

        def read_units(name: str) -> np.ndarray | None:
            arr = self.group[name]
            blocks, damaged = [], []
            for a, b in self._units(name):
                try:
                    blocks.append(np.asarray(arr[a:b]))
                except Exception as exc:  # crc32c mismatch, truncated file, bad shard index…
                    damaged.append((a, b))
                    report.problems.append(f"'{name}' steps {a}..{b - 1}: {_decode_error(exc)}")
            if damaged:
                report.damaged[name] = damaged
                bad_steps.extend(a for a, _ in damaged)
                return None
            return np.concatenate(blocks) if len(blocks) > 1 else blocks[0]

        committed = read_units("committed")
        if committed is not None:
            done = committed.astype(bool)
            committed_rec = int(np.argmin(done)) if not done.all() else len(done)
        report.committed = committed_rec
        sums = read_units("checksum") if report.checksummed else None
        rows = {name: read_units(name) for name in self.record_arrays()}
        if sums is not None and committed is not None and all(v is not None for v in rows.values()):
            names = sorted(rows)
            for step in range(committed_rec):
                if digest([rows[n][step] for n in names]) != int(sums[step]):
                    culprit = self._culprit(step, names, rows)
                    report.problems.append(f"step {step}: checksum mismatch{culprit}")
                    bad_steps.append(step)
                    break
        if committed is None or (report.checksummed and sums is None):
            bad_steps.append(0)
        for name, expected in (self._attr("checksums") or {}).items():
            if name not in self.group:
                report.static_damage.append(name)
                report.problems.append(f"'{name}' is missing")
                continue
            try:
                got = digest([np.asarray(self.group[name][...])])
            except Exception as exc:
                got = None
                report.problems.append(f"'{name}': {type(exc).__name__}: {str(exc)[:80]}")
            if got != expected:
                if got is not None:
                    report.problems.append(f"'{name}': checksum mismatch")
                if name in (self._attr("final") or ()):
                    report.final_damage.append(name)  # rewritten when the run finishes again
                else:
                    report.static_damage.append(name)
        bad = [b for b in bad_steps if b < max(committed_rec, 1)]
        report.first_bad = min(bad) if bad else None
        return report

    def _culprit(self, step: int, names: list[str], rows: dict[str, np.ndarray]) -> str:
        """Which arrays of a mismatching step hold only their fill value (a lost chunk)."""
        lost = []
        for n in names:
            arr = self.group[n]
            row = rows[n][step]
            fill = np.full(row.shape, arr.fill_value, dtype=arr.dtype)
            if row.size and np.array_equal(row, fill, equal_nan=row.dtype.kind == "f"):
                lost.append(n)
        return f" (chunk of {', '.join(repr(n) for n in lost[:3])} missing)" if lost else ""

    def repair(self) -> str | None:
        """Make the store's committed steps exactly the verified ones: delete damaged chunk
        files, un-commit the first damaged step and all after it. Returns what was done
        (None when the store was intact); StoreFormatError if data written once is damaged.

        Damaged array metadata is repaired first: an array's ``zarr.json`` is written back
        from its copy in the consolidated metadata when that copy is intact (matches the
        digest recorded at creation), a damaged consolidated copy is rebuilt from the
        arrays' files; then the data is verified with the repaired metadata. Metadata with
        no intact copy left: StoreFormatError naming the file."""
        report = self.verify()
        if report.ok:
            return None
        restored = self._repair_metadata(report.metadata) if report.metadata else []
        if restored:
            report = self.verify()
            if report.metadata:  # pragma: no cover - what was restored must now check
                raise StoreFormatError(f"store '{self.path}': {report.metadata[0].line()} after restoring it")
            if report.ok:
                return f"'{self.path}': restored {', '.join(restored)}; every committed step intact"
        if report.static_damage:
            raise StoreFormatError(
                f"store '{self.path}': {', '.join(report.static_damage)} (written once, not per step) "
                "damaged; start over with output.overwrite=true"
            )
        for name in report.final_damage:
            try:
                self.group[name][...] = np.full(self.group[name].shape, self.group[name].fill_value)
            except Exception:
                shutil.rmtree(os.path.join(self.path, name, "c"), ignore_errors=True)
        for name, units in report.damaged.items():
            per = self._units(name)
            for a, _ in units:
                path = self._unit_file(name, [u[0] for u in per].index(a))
                if os.path.exists(path):
                    os.remove(path)
        first = report.first_bad if report.first_bad is not None else report.committed
        n = self.n_steps
        if "committed" in report.damaged:
            self.group["committed"][:] = np.zeros(n, dtype="uint8")
        else:
            self.group["committed"][first:] = 0
        if "checksum" in self.group:
            if "checksum" in report.damaged:
                self.group["checksum"][:] = np.zeros(n, dtype="uint32")
            else:
                self.group["checksum"][first:] = 0
        self.update_attrs({"complete": False})
        zarr.consolidate_metadata(self.path)
        what = "; ".join(report.problems[:3])
        fixed = f" (restored {', '.join(restored)})" if restored else ""
        return (f"step {first} of '{self.path}' is not intact ({what}): un-committed steps "
                f"{first}..{report.committed - 1}, recomputing from step {first}{fixed}")

    def _repair_metadata(self, problems: list[MetadataProblem]) -> list[str]:
        """Write back damaged array metadata from intact copies, rebuild the consolidated
        metadata if needed, reopen the group. Returns what was restored; StoreFormatError
        (one line naming the file) for metadata with no intact copy."""
        hopeless = [p for p in problems if p.restore is None and not p.reconsolidate]
        if hopeless:
            raise StoreFormatError(
                f"store '{self.path}': {hopeless[0].line()}: no intact copy to restore it from; "
                "start over with output.overwrite=true"
            )
        done = []
        for p in problems:
            if p.restore is not None:
                target = os.path.join(self.path, p.file)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                tmp = f"{target}.{os.getpid()}.tmp"
                with open(tmp, "w", encoding="utf-8") as fh:
                    json.dump(p.restore, fh, indent=2)
                os.replace(tmp, target)
                done.append(f"'{p.file}' from the consolidated metadata")
        if any(p.reconsolidate for p in problems):
            zarr.consolidate_metadata(self.path)
            done.append("the consolidated metadata in 'zarr.json'")
        self.group = zarr.open_group(self.path, mode="r+", zarr_format=3)
        return done


def _decode_error(exc: BaseException) -> str:
    text = _first(exc)
    if "checksum" in text.lower():
        return "chunk fails its crc32c checksum"
    return f"chunk does not decode ({type(exc).__name__}: {text[:80]})"


def _first(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:160]


def json_safe(obj: Any) -> Any:
    """Round-trip through JSON so attributes hold plain types only."""
    return json.loads(json.dumps(obj, default=str))


def _netcdf_ready(value: Any) -> bool:
    """A value netCDF (and every xarray engine) takes as an attribute as it is."""
    if isinstance(value, str) or (isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_)):
        return True
    return (isinstance(value, list | tuple) and len(value) > 0
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value))


def encode_attrs(values: Mapping[str, Any], json_names: str = "") -> dict[str, Any]:
    """``values`` as netCDF-ready attributes: strings, numbers and lists of numbers as they
    are, booleans as 0/1, anything else (dicts, lists of strings, None, …) as JSON text
    named in ``json_attrs`` (``json_names``: the names already listed there). Returns the
    attributes to set, ``json_attrs`` included when anything is JSON."""
    names = set(json_names.split())
    out: dict[str, Any] = {}
    plain = json.loads(json.dumps(dict(values), default=_plain_json))
    for key, value in plain.items():
        if key == JSON_ATTRS:
            continue
        if isinstance(value, bool):
            out[key] = int(value)
            names.discard(key)
        elif _netcdf_ready(value):
            out[key] = value
            names.discard(key)
        else:
            out[key] = json.dumps(value, sort_keys=True, ensure_ascii=False)
            names.add(key)
    if names or json_names:
        out[JSON_ATTRS] = " ".join(sorted(names))
    return out


def _plain_json(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def decode_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """A store's (or sweep.zarr's) attributes as Python values: those named in
    ``json_attrs`` parsed from their JSON text (a value that is not text, as in a store
    written before the attributes were netCDF-ready, is passed through as it is)."""
    out = dict(attrs)
    names = out.get(JSON_ATTRS)
    for key in names.split() if isinstance(names, str) else ():
        value = out.get(key)
        if isinstance(value, str):
            try:
                out[key] = json.loads(value)
            except ValueError:
                pass  # not JSON after all (edited by hand): the text as it is
    return out


def netcdf_ready(ds):
    """A shallow copy of the ``xarray.Dataset`` ``ds`` whose attributes (the dataset's and
    every variable's) netCDF takes: what :func:`encode_attrs` writes. Needed only for a
    store written before attributes were netCDF-ready (its ``config`` is a mapping) or a
    dataset whose attributes were decoded."""
    out = ds.copy(deep=False)
    out.attrs = encode_attrs(decode_attrs(ds.attrs))
    for var in out.variables.values():
        if not all(_netcdf_ready(v) for v in var.attrs.values()):
            var.attrs = encode_attrs(decode_attrs(var.attrs))
    return out


def to_netcdf_safe(ds, path: str, **kwargs: Any):
    """``ds.to_netcdf(path, **kwargs)`` after :func:`netcdf_ready`: works on any run store
    or sweep.zarr opened with ``xr.open_zarr``, old ones included."""
    return netcdf_ready(ds).to_netcdf(path, **kwargs)
