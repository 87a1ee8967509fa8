"""``insr-hpc status`` reads run.json and small arrays directly: same answers as zarr, no torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import zarr
from _small import REPO

from insr_hpc import store_small
from insr_hpc.analysis import status
from insr_hpc.store import StepStore, VarSpec

STEPS = 5


def _store(run_dir: str, version: int, committed: int, state: str = "running") -> str:
    os.makedirs(run_dir)
    variables = {
        "step": VarSpec(("step",), (STEPS,), "int32", data=np.arange(STEPS, dtype=np.int32)),
        "loss": VarSpec(("step", "substep"), (STEPS, 2), "float64"),
        "rel_l2": VarSpec(("step",), (STEPS,), "float64"),
        "iterations": VarSpec(("step", "substep"), (STEPS, 2), "int32"),
        "capped": VarSpec(("step", "substep"), (STEPS, 2), "int8", fill=-1),
        "field": VarSpec(("step", "x"), (STEPS, 64), "float32"),
    }
    store = StepStore.create(os.path.join(run_dir, "store.zarr"), variables, {"run_id": "r"}, store_version=version)
    rng = np.random.default_rng(version)
    for step in range(committed):
        store.commit_step(step, {"loss": rng.random(2), "rel_l2": rng.random() if step != 2 else np.nan,
                                 "iterations": [step, -1], "capped": [step % 2, -1], "field": rng.random(64)})
    with open(os.path.join(run_dir, "run.json"), "w", encoding="utf-8") as fh:
        json.dump({"state": state, "run_id": os.path.basename(run_dir)}, fh)
    return run_dir


def _with_zarr(run_dir: str) -> dict:
    """What the status of a run was before: the same figures through zarr's own reader."""
    group = zarr.open_group(os.path.join(run_dir, "store.zarr"), mode="r")
    done = np.asarray(group["committed"][:]).astype(bool)
    n = int(np.argmin(done)) if not done.all() else len(done)
    out = {"steps_done": n, "steps_total": len(done), "last_loss": None, "last_error": None}
    flags = np.asarray(group["capped"][:n])
    out["capped"] = (int((flags == 1).sum()), int((flags >= 0).sum()))
    if n:
        loss = np.asarray(group["loss"][n - 1], dtype=float)
        out["last_loss"] = float(np.nanmax(loss)) if np.isfinite(loss).any() else None
        seen = np.asarray(group["rel_l2"][:n], dtype=float)
        finite = np.flatnonzero(np.isfinite(seen))
        out["last_error"] = ("rel_l2", float(seen[finite[-1]])) if finite.size else None
    return out


@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize("committed", [0, 1, 3, STEPS])
def test_status_figures_equal_zarrs(tmp_path, version, committed):
    run_dir = _store(str(tmp_path / "r"), version, committed)
    got = status.run_status(run_dir)
    assert "store_error" not in got, got
    keys = ("steps_done", "steps_total", "last_loss", "last_error", "capped")
    assert {k: got[k] for k in keys} == _with_zarr(run_dir)
    assert got["steps_done"] == committed and got["capped"] == (committed // 2, committed)
    for name in ("committed", "loss", "rel_l2", "iterations", "capped", "field", "step"):  # every array, bit for bit
        path = os.path.join(run_dir, "store.zarr", name)
        ours, theirs = store_small.read_small(path), np.asarray(zarr.open_array(path, mode="r")[:])
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, name
        np.testing.assert_array_equal(ours, theirs)


def _every_small_array(path: str, version: int, n: int = 10) -> list[str]:
    """A store holding every kind of numeric array StepStore writes (all dtypes status and
    report read, a never-written one, and, in formats 2 and 3, a sharded one whose last
    shard is partial), some steps committed. Returns the array names."""
    variables = {
        "step": VarSpec(("step",), (n,), "int32", data=np.arange(n, dtype=np.int32)),
        "time": VarSpec(("step",), (n,), "float64", data=np.linspace(0, 1, n)),
        "loss": VarSpec(("step", "substep"), (n, 2), "float64"),
        "iterations": VarSpec(("step", "substep"), (n, 2), "int32", fill=-1),
        "capped": VarSpec(("step", "substep"), (n, 2), "int8", fill=-1),
        "rel_l2": VarSpec(("step",), (n,), "float64"),
        "seconds": VarSpec(("step",), (n,), "float32"),
        "flag": VarSpec(("step",), (n,), "bool"),
        "never": VarSpec(("step",), (n,), "float64"),
        "big": VarSpec(("step", "x"), (n, 1_000_000), "float32"),  # 4 MB a step: shards of 4 steps
        "final": VarSpec(("x2",), (7,), "float64"),
    }
    store = StepStore.create(path, variables, {"run_id": "r"}, store_version=version)
    for k in (0, 1, 2, 5, 9):
        store.commit_step(k, {"loss": [k, np.nan], "iterations": [k, -1], "capped": [k % 2, -1], "rel_l2": 1 / (k + 1),
                              "seconds": 0.5 * k, "flag": k % 2 == 0, "big": np.full(1_000_000, k, np.float32)})
    store.write_arrays({"final": np.arange(7.0)})
    names = list(store.group.array_keys())
    assert ("checksum" in names) == (version == 3)
    return sorted(names)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_fast_reader_equals_zarr_for_every_array_stepstore_writes(tmp_path, version):
    path = str(tmp_path / "s.zarr")
    names = _every_small_array(path, version)
    big = zarr.open_array(os.path.join(path, "big"), mode="r")
    assert (big.shards is not None) == (version >= 2)
    assert version == 1 or big.shape[0] % big.shards[0]  # the last shard is partial
    for name in names:
        ours, theirs = store_small.read_small(os.path.join(path, name)), np.asarray(zarr.open_array(os.path.join(path, name), mode="r")[:])
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, name
        np.testing.assert_array_equal(ours, theirs, err_msg=name)
    assert store_small.read_small(os.path.join(path, "committed")).tolist() == [1, 1, 1, 0, 0, 1, 0, 0, 0, 1]


def _meta(path: str, name: str) -> dict:
    return json.load(open(os.path.join(path, name, "zarr.json")))


def _set_meta(path: str, name: str, meta: dict) -> None:
    json.dump(meta, open(os.path.join(path, name, "zarr.json"), "w"))


@pytest.mark.parametrize("change", [
    lambda m: m["codecs"].insert(1, {"name": "transpose", "configuration": {"order": [0, 1]}}),
    lambda m: m["codecs"].append({"name": "gzip", "configuration": {"level": 1}}),
    lambda m: m["codecs"][0].update(configuration={"endian": "big"}),
    lambda m: m["chunk_key_encoding"]["configuration"].update(separator="."),
    lambda m: m.update(data_type="string"),
    lambda m: m.update(fill_value="0x7fc00000"),
    lambda m: m["chunk_grid"].update(name="rectilinear"),
], ids=["transpose", "gzip", "big-endian", "dot-keys", "string", "hex-fill", "grid"])
def test_fast_reader_refuses_layouts_it_does_not_decode(tmp_path, change):
    path = str(tmp_path / "s.zarr")
    StepStore.create(path, {"loss": VarSpec(("step", "substep"), (4, 2), "float64")}, {})
    meta = _meta(path, "loss")
    change(meta)
    _set_meta(path, "loss", meta)
    with pytest.raises(store_small.UnsupportedLayout):
        store_small.read_small(os.path.join(path, "loss"))


def test_fast_reader_checks_every_crc32c(tmp_path):
    path = str(tmp_path / "s.zarr")
    _every_small_array(path, 3)

    def flip(file: str, at: int) -> None:
        data = bytearray(open(file, "rb").read())
        data[at] ^= 1
        open(file, "wb").write(bytes(data))

    flip(os.path.join(path, "loss", "c", "0", "0"), 5)
    with pytest.raises(ValueError, match="loss/c/0/0' fails its crc32c checksum"):
        store_small.read_small(os.path.join(path, "loss"))
    shard = os.path.join(path, "big", "c", "0", "0")
    flip(shard, os.path.getsize(shard) - 10)  # in the shard index
    with pytest.raises(ValueError, match=r"\(shard index\) fails its crc32c checksum"):
        store_small.read_small(os.path.join(path, "big"))
    flip(shard, os.path.getsize(shard) - 10)
    flip(shard, 40)  # in the first inner chunk
    with pytest.raises(ValueError, match=r"\(inner chunk \(0, 0\)\) fails its crc32c checksum"):
        store_small.read_small(os.path.join(path, "big"))
    open(os.path.join(path, "rel_l2", "c", "0"), "wb").close()  # truncated to nothing
    with pytest.raises(ValueError, match="fails its crc32c checksum"):
        store_small.read_small(os.path.join(path, "rel_l2"))


def test_status_shows_a_run_whose_run_files_are_gone_as_unknown(tmp_path):
    root = tmp_path / "runs"
    kept = _store(str(root / "r000"), 3, 2, state="done")
    lost = _store(str(root / "r001"), 3, 3)
    os.remove(os.path.join(lost, "run.json"))  # and it never had a spec.json here: both gone
    before = sorted((d, tuple(sorted(f))) for d, _, f in os.walk(lost))
    mtimes = {os.path.join(d, x): os.stat(os.path.join(d, x)).st_mtime_ns for d, _, fs in os.walk(lost) for x in fs}
    assert status.find_runs(str(root)) == [kept, lost]
    st = status.run_status(lost)
    assert st["state"] == "unknown" and st["steps_done"] == 3
    assert st["reason"] == "run files missing (run.json, spec.json); store has 3 committed steps"
    table = status.format_table([status.run_status(kept), st])
    row = next(line for line in table.splitlines() if line.startswith("r001"))
    assert "unknown" in row and "3/5" in row and "run files missing (run.json, spec.json)" in row
    assert "1 run(s) unknown" in table
    assert sorted((d, tuple(sorted(f))) for d, _, f in os.walk(lost)) == before  # nothing written
    assert {p: os.stat(p).st_mtime_ns for p in mtimes} == mtimes
    # a spec.json alone (a run not started yet) is still pending, not unknown
    spec_only = str(root / "r002")
    os.makedirs(spec_only)
    open(os.path.join(spec_only, "spec.json"), "w").write("{}")
    assert status.run_status(spec_only)["state"] == "pending"


def test_status_command_imports_no_torch(tmp_path):
    _store(str(tmp_path / "runs" / "r000"), 2, 2, state="done")
    code = ("import sys; from insr_hpc.cli import main; rc = main(['status', sys.argv[1]]); "
            "assert 'torch' not in sys.modules, 'status imported torch'; raise SystemExit(rc)")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "runs")], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=REPO), timeout=300)
    assert res.returncode == 0, res.stderr
    assert "r000" in res.stdout and "2/5" in res.stdout
