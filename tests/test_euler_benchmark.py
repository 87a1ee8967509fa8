"""benchmarks/euler.py end to end, shrunk (``--smoke --steps 1``): the table has its grid
rows with finite numbers; and, where a checkout of the INSR authors' code can be made
from the local mirror (absent in CI: skipped), their row shows positive ms per iteration."""

from __future__ import annotations

import io
import math
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "euler.py")
MIRROR = "/work/.mirror/honglin-c+INSR-PDE/repo"


def run_benchmark(*extra: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, SCRIPT, "--smoke", "--steps", "1", *extra], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def table(out: str) -> dict[str, dict[str, str]]:
    """The markdown table's rows by method, each a {header: cell} dict."""
    lines = [ln for ln in out.splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines]
    headers = cells[0]
    assert headers[0] == "method"
    return {row[0]: dict(zip(headers, row, strict=True)) for row in cells[2:]}


def numbers(cell: str) -> list[float]:
    out = []
    for tok in cell.replace("(", " ").replace(")", " ").replace("/", " ").replace(",", " ").split():
        try:
            out.append(float(tok))
        except ValueError:
            pass
    return out


def test_grid_rows_finite():
    rows = table(run_benchmark("--skip", "adam"))
    grid = [name for name in rows if name.startswith("grid, equal memory")]
    assert len(grid) == 2  # linear and cubic
    for name in [*grid, "grid reference itself (256², cubic)"]:
        row = rows[name]
        cols = [h for h in row if h.startswith(("rel L2", "drift"))]
        assert cols
        for h in cols:
            v = float(row[h])
            assert math.isfinite(v) and v >= 0, (name, h, row[h])
    for name in grid:
        assert float(rows[name]["CPU s / step"]) >= 0
    gn = rows["this project, Gauss–Newton"]
    assert math.isfinite(float(gn["rel L2 t = 0.05"])) and float(gn["CPU s / step"]) > 0


@pytest.fixture(scope="module")
def authors_checkout(tmp_path_factory):
    if not os.path.isdir(MIRROR) or shutil.which("git") is None:
        pytest.skip("no local mirror of honglin-c/INSR-PDE")
    proc = subprocess.run(["git", "--git-dir", MIRROR, "archive", "--format=tar", "HEAD", "base", "fluid",
                           "config.py"], capture_output=True, timeout=60)
    if proc.returncode != 0:
        pytest.skip(f"git archive of the mirror failed: {proc.stderr.decode()[:200]}")
    dest = tmp_path_factory.mktemp("insr-authors")
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return str(dest)


def test_authors_row(authors_checkout):
    rows = table(run_benchmark("--authors-repo", authors_checkout, "--skip", "adam", "gn"))
    name = next(n for n in rows if n.startswith("authors' code"))
    ms = numbers(rows[name]["CPU ms / iteration (wall)"])
    assert len(ms) == 8 and all(v > 0 for v in ms), rows[name]  # 4 sub-problems, CPU and wall
    assert rows[name]["iterations / sub-problem"].startswith("2005–20000")
