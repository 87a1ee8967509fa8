"""Store format version 2 (sharded): file-count bound, reading and resuming version-1
stores, refusing unknown versions."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import xarray as xr
import zarr
from conftest import CONFIG, tiny

from insr_hpc.cli import main
from insr_hpc.store import (
    METADATA_DIGESTS,
    SHARD_BYTES,
    SINGLE_CHUNK_BYTES,
    StepStore,
    StoreFormatError,
    VarSpec,
    record_shards,
)


def _n_files(path: str) -> int:
    return sum(len(files) for _, _, files in os.walk(path))


def _toy(n: int, width: int = 4) -> dict[str, VarSpec]:
    return {
        "step": VarSpec(("step",), (n,), "int32", {}, np.arange(n, dtype=np.int32)),
        "weights": VarSpec(("step", "parameter"), (n, width), "float32"),
        "rel_l2": VarSpec(("step",), (n,), "float64"),
    }


def test_sharded_store_of_240_steps_has_few_files_and_v1_has_one_per_step(tmp_path):
    files = {}
    for version in (1, 2):
        path = str(tmp_path / f"v{version}.zarr")
        store = StepStore.create(path, _toy(241), {"run_id": "toy"}, store_version=version)
        for k in range(241):
            store.commit_step(k, {"weights": np.full(4, k, np.float32), "rel_l2": 1.0 / (k + 1)})
        store.finish({"complete": True})
        files[version] = _n_files(path)
        ds = xr.open_zarr(path)
        assert ds.attrs["store_version"] == version
        np.testing.assert_array_equal(ds.weights.values[:, 0], np.arange(241, dtype=np.float32))
        assert float(ds.rel_l2.sel(step=9)) == pytest.approx(0.1)
    # v1: one file per step for each of weights, rel_l2, committed (+ metadata)
    assert files[1] >= 3 * 241
    # v2: one shard per array: 4 arrays × (metadata + shard) + root metadata
    assert files[2] == 4 * 2 + 1


def test_large_per_step_arrays_are_one_chunk_per_step_in_shards(tmp_path):
    n, side = 40, 256  # 40 steps of a 256² × 2 float32 velocity: 512 KiB a step, 20 MiB in all
    variables = {"u": VarSpec(("step", "y", "x", "component"), (n, side, side, 2), "float32")}
    path = str(tmp_path / "big.zarr")
    store = StepStore.create(path, variables, {"run_id": "big"})
    u = store.group["u"]
    assert u.chunks == (1, side, side, 2) and u.shards == (32, side, side, 2)
    for k in (0, 31, 32, 39):
        store.commit_step(k, {"u": np.full((side, side, 2), k, np.float32)})
    assert sorted(os.listdir(os.path.join(path, "u", "c"))) == ["0", "1"]  # two shard files
    got = xr.open_zarr(path).u.values
    assert got[31, 0, 0, 0] == 31 and got[32, 5, 5, 1] == 32 and np.isnan(got[1]).all()


def test_record_shards_bound_the_shard_size():
    assert record_shards(241, (1, 481), "float32") == (241, 481)
    big = record_shards(241, (1, 512, 512, 2), "float32")  # 2 MiB per step
    assert big[0] * 512 * 512 * 2 * 4 <= SHARD_BYTES and big[0] >= 1
    assert record_shards(10, (1, 4096, 4096), "float64") == (1, 4096, 4096)


def test_advection_store_is_one_shard_per_array_so_240_steps_stay_under_50_files(tmp_path):
    assert main(["run", CONFIG, *tiny(str(tmp_path), "output.resolution=512", steps=2)]) == 0
    path = str(tmp_path / "advection" / "r000" / "store.zarr")
    group = zarr.open_group(path, mode="r")
    names = list(group.array_keys())
    assert _n_files(path) == 2 * len(names) + 1  # metadata + one data file per array, + root
    for name in names:
        arr = group[name]
        if arr.metadata.dimension_names[0] == "step":
            # the default 240-step, 512-point run: every array still fits one chunk
            assert arr.chunks == arr.shape and arr.shards is None, name
            assert 241 * arr.nbytes // arr.shape[0] <= SINGLE_CHUNK_BYTES, name
    assert len(names) * 2 + 1 <= 50


def test_version_1_store_is_read_and_resumed(tmp_path):
    path = str(tmp_path / "old.zarr")
    store = StepStore.create(path, _toy(6), {"run_id": "old"}, store_version=1)
    for k in range(3):
        store.commit_step(k, {"weights": np.full(4, k, np.float32), "rel_l2": 0.5})
    again = StepStore.open(path)  # resume: continues after the committed steps, same layout
    assert again.version == 1 and again.completed_steps() == 3
    again.commit_step(3, {"weights": np.full(4, 3, np.float32), "rel_l2": 0.25})
    assert os.path.exists(os.path.join(path, "weights", "c", "3", "0"))  # still one file per step
    ds = xr.open_zarr(path)
    np.testing.assert_array_equal(ds.committed.values, [1, 1, 1, 1, 0, 0])
    assert float(ds.rel_l2[3]) == 0.25


def test_unknown_store_version_is_refused(tmp_path):
    path = str(tmp_path / "future.zarr")
    StepStore.create(path, _toy(3), {"run_id": "f"})
    zarr.open_group(path, mode="r+").attrs["store_version"] = 7
    with pytest.raises(StoreFormatError, match="store_version 7"):
        StepStore.open(path)
    with pytest.raises(StoreFormatError, match="nothing.zarr.: unreadable metadata"):
        StepStore.open(str(tmp_path / "nothing.zarr"))


# -- metadata integrity -------------------------------------------------------------------
def _committed_toy(path: str, n: int = 6) -> StepStore:
    store = StepStore.create(path, _toy(n), {"run_id": "m"})
    for k in range(n):
        store.commit_step(k, {"weights": np.full(4, k, np.float32), "rel_l2": 1.0 / (k + 1)})
    store.finish({"complete": True})
    return store


def _truncate(path, name):
    file = os.path.join(path, name, "zarr.json")
    data = open(file).read()
    open(file, "w").write(data[:100])


def _retype(path, name):  # valid JSON, valid zarr, not what was created
    file = os.path.join(path, name, "zarr.json")
    meta = json.load(open(file))
    meta["data_type"] = "float64" if meta["data_type"] != "float64" else "float32"
    json.dump(meta, open(file, "w"))


def _remove(path, name):
    os.remove(os.path.join(path, name, "zarr.json"))


@pytest.mark.parametrize("damage", [_truncate, _retype, _remove], ids=["truncated", "retyped", "missing"])
@pytest.mark.parametrize("name", ["weights", "committed", "step"])
def test_damaged_array_metadata_is_found_by_verify_and_restored_by_repair(tmp_path, damage, name):
    path = str(tmp_path / "s.zarr")
    _committed_toy(path)
    digests = StepStore.read_attrs(path)[METADATA_DIGESTS]
    assert sorted(digests) == ["checksum", "committed", "rel_l2", "step", "weights"]
    assert StepStore.open(path, mode="r").verify().ok
    before = xr.open_zarr(path, consolidated=False).load()
    damage(path, name)
    report = StepStore.open(path, mode="r").verify()
    assert not report.ok and [p.file for p in report.metadata] == [f"{name}/zarr.json"]
    assert f"DAMAGED: {path}: '{name}/zarr.json': " in report.line()
    assert StepStore.open(path, mode="r").verify().first_bad is None  # the data itself is intact
    done = StepStore.open(path).repair()
    assert f"restored '{name}/zarr.json' from the consolidated metadata; every committed step intact" in done
    assert StepStore.open(path, mode="r").verify().ok
    after = xr.open_zarr(path, consolidated=False).load()  # zarr reads the array's own file again
    xr.testing.assert_identical(after, before)
    assert StepStore.open(path).completed_steps() == 6 and StepStore.read_attrs(path)["complete"]


def test_damaged_consolidated_metadata_is_rebuilt_from_the_arrays(tmp_path):
    path = str(tmp_path / "s.zarr")
    _committed_toy(path)
    root = json.load(open(os.path.join(path, "zarr.json")))
    root["consolidated_metadata"]["metadata"]["rel_l2"]["fill_value"] = 0.0
    json.dump(root, open(os.path.join(path, "zarr.json"), "w"))
    report = StepStore.open(path, mode="r").verify()
    assert not report.ok and "'zarr.json': consolidated metadata of 'rel_l2': differs" in report.line()
    assert "consolidated metadata in 'zarr.json'" in StepStore.open(path).repair()
    assert StepStore.open(path, mode="r").verify().ok
    assert np.isnan(xr.open_zarr(path).rel_l2.attrs.get("_FillValue", np.nan))


def test_metadata_with_no_intact_copy_is_refused_naming_the_file(tmp_path):
    path = str(tmp_path / "s.zarr")
    _committed_toy(path)
    _truncate(path, "weights")
    root = json.load(open(os.path.join(path, "zarr.json")))
    root["consolidated_metadata"]["metadata"]["weights"]["shape"] = [6, 5]
    json.dump(root, open(os.path.join(path, "zarr.json"), "w"))
    with pytest.raises(StoreFormatError) as exc:
        StepStore.open(path).repair()
    msg = str(exc.value)
    assert "\n" not in msg and f"store '{path}': 'weights/zarr.json': is not valid JSON" in msg
    assert "no intact copy" in msg and "output.overwrite=true" in msg
    open(os.path.join(path, "zarr.json"), "w").write('{"zarr_format": 3, "node_ty')  # the root itself
    with pytest.raises(StoreFormatError, match=r"'zarr.json': is not valid JSON"):
        StepStore.open(path)


def test_store_without_metadata_digests_verifies_with_a_note_and_is_resumed(tmp_path):
    """Stores of version 3 created before metadata_digests: parsed and compared with the
    consolidated copy only; still verified, repaired and resumed."""
    path = str(tmp_path / "s.zarr")
    store = StepStore.create(path, _toy(6), {"run_id": "old"})
    for k in range(3):
        store.commit_step(k, {"weights": np.full(4, k, np.float32), "rel_l2": 0.5})
    del store.group.attrs[METADATA_DIGESTS]
    zarr.consolidate_metadata(path)
    report = StepStore.open(path, mode="r").verify()
    assert report.ok and not report.metadata_digested
    assert report.line().endswith(f"checksums match (metadata parsed; no {METADATA_DIGESTS}: store created before they were recorded)")
    _truncate(path, "weights")
    assert [p.file for p in StepStore.open(path, mode="r").verify().metadata] == ["weights/zarr.json"]
    again = StepStore.open(path)
    assert "restored 'weights/zarr.json'" in again.repair()
    assert again.completed_steps() == 3
    again.commit_step(3, {"weights": np.full(4, 3, np.float32), "rel_l2": 0.25})
    assert StepStore.open(path, mode="r").verify().ok
    assert METADATA_DIGESTS not in StepStore.read_attrs(path)
    for version in (1, 2):  # no checksums, no digests: metadata still parsed
        old = str(tmp_path / f"v{version}.zarr")
        StepStore.create(old, _toy(3), {"run_id": "v"}, store_version=version)
        assert StepStore.open(old, mode="r").verify().line().endswith(f"decodes (format v{version} has no checksums)")
        _truncate(old, "rel_l2")
        assert not StepStore.open(old, mode="r").verify().ok
