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


def test_plain_layout_only_for_one_plain_chunk(tmp_path):
    run_dir = _store(str(tmp_path / "r"), 2, 1)
    meta = lambda name: open(os.path.join(run_dir, "store.zarr", name, "zarr.json"), "rb").read()  # noqa: E731
    assert store_small._plain_layout(meta("loss")) is not None  # format 2: one chunk
    v1 = _store(str(tmp_path / "v1"), 1, 1)
    assert store_small._plain_layout(open(os.path.join(v1, "store.zarr", "loss", "zarr.json"), "rb").read()) is None
    big = json.loads(meta("loss"))
    big["codecs"].append({"name": "gzip", "configuration": {"level": 1}})  # a codec it does not decode itself: zarr reads it
    assert store_small._plain_layout(json.dumps(big).encode()) is None
    v3 = _store(str(tmp_path / "v3"), 3, 2)  # format 3: bytes, zstd, crc32c; a flipped bit is caught
    chunk = os.path.join(v3, "store.zarr", "loss", "c", "0", "0")
    assert store_small._plain_layout(open(os.path.join(v3, "store.zarr", "loss", "zarr.json"), "rb").read())[3] == (True, True)
    data = bytearray(open(chunk, "rb").read())
    data[5] ^= 1
    open(chunk, "wb").write(bytes(data))
    with pytest.raises(ValueError, match="fails its crc32c checksum"):
        store_small.read_small(os.path.join(v3, "store.zarr", "loss"))


def test_status_command_imports_no_torch(tmp_path):
    _store(str(tmp_path / "runs" / "r000"), 2, 2, state="done")
    code = ("import sys; from insr_hpc.cli import main; rc = main(['status', sys.argv[1]]); "
            "assert 'torch' not in sys.modules, 'status imported torch'; raise SystemExit(rc)")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "runs")], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=REPO), timeout=300)
    assert res.returncode == 0, res.stderr
    assert "r000" in res.stdout and "2/5" in res.stdout
