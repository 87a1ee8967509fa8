"""benchmarks/device_check.py on this CPU at its small sizes: every item runs (advection,
Euler, MMGN reconstruction, packs of 1/2/4, a one-rank gloo group) and every row is ok
with finite numbers; one failing item is a row of its own and the others still run."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "benchmarks", "device_check.py")
DOC = os.path.join(REPO, "docs", "benchmarks.md")
sys.path.insert(0, REPO)


def _digest(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def test_small_cpu_check_every_row_ok(tmp_path):
    rows_json, table_md = tmp_path / "rows.json", tmp_path / "table.md"
    doc_before = _digest(DOC)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": REPO}
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--device", "cpu", "--small", "--threads", "1", "--json", str(rows_json),
         "--out", str(table_md)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(rows_json.read_text())
    assert data["device"] == "cpu" and data["device_type"] == "cpu" and data["small"]
    items = [r["item"] for r in data["rows"]]
    for prefix in ("advection", "euler", "elasticity 3D", "recon mmgn", "pack k=1", "pack k=2", "pack k=4", "ddp gloo"):
        assert sum(i.startswith(prefix) for i in items) == 1, (prefix, items)
    for row in data["rows"]:
        assert row["status"] == "ok", row
        for key in ("cpu_s", "wall_s", "peak_mib"):
            assert math.isfinite(row[key]) and row[key] > 0, (key, row)
        assert row["values"] and all(math.isfinite(v) for v in row["values"].values()), row
    ddp = next(r for r in data["rows"] if r["item"].startswith("ddp"))
    assert ddp["values"]["grads"] == ddp["values"]["scalar"] == ddp["values"]["gram"] == 0.0
    assert ddp["values"]["reductions"] > 0
    # the printed table (and --out) has one line per row, each ending in ok
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("| ") and not ln.startswith("| item")]
    assert len(lines) == len(items) and all("| cpu |" in ln and "| ok |" in ln for ln in lines)
    assert all(ln in table_md.read_text() for ln in lines)
    # a report made elsewhere (a lent GPU) comes back through --from-json, nothing rerun
    from benchmarks import device_check as dc

    again = tmp_path / "again.md"
    assert dc.main(["--from-json", str(rows_json), "--out", str(again)]) == 0
    assert again.read_text() == table_md.read_text()
    assert _digest(DOC) == doc_before  # docs/benchmarks.md is written only with --write


def test_a_failing_item_is_a_row_and_the_rest_still_run(monkeypatch):
    from benchmarks import device_check as dc

    def broken(dev, sizes):
        raise RuntimeError("Expected all tensors to be on the same device")

    def fine(dev, sizes):
        return [dc.Row("euler (stub)", "step", 0.1, 0.1, "rel L2 0", {"rel_l2": 0.0})]

    monkeypatch.setattr(dc, "check_advection", broken)
    monkeypatch.setattr(dc, "check_euler", fine)
    rows = dc.run_items(["advection", "euler"], torch.device("cpu"), dc.SMALL, budget_s=60)
    assert [r.item for r in rows] == ["advection", "euler (stub)"]
    assert rows[0].status.startswith("error: RuntimeError: Expected all tensors") and rows[1].status == "ok"
    assert math.isfinite(rows[0].peak_mib)
    table = dc.table(rows, torch.device("cpu"))
    assert "| advection | cpu |" in table and "error: RuntimeError" in table


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_requested_without_cuda_is_refused(capsys):
    from benchmarks import device_check as dc

    with pytest.raises(SystemExit) as exc:
        dc.main(["--device", "cuda"])
    assert exc.value.code == 2 and "no CUDA device" in capsys.readouterr().err
