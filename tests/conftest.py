"""Shared fixtures: tiny run configs, subprocess environment, the Slurm dev cluster.

Tests that need Slurm use the ``slurm_cluster`` fixture: it skips (with the command to
start one) when no controller answers, and fails instead when INSR_REQUIRE_SLURM=1
(CI starts ``slurm/dev-cluster.sh`` and sets it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "advection.yaml")
PYTHON = sys.executable
BIN = os.path.dirname(PYTHON)

# Jobs started by Slurm, torchrun and mpiexec inherit this environment: make them
# import this checkout's insr_hpc and run single-threaded (2-core CI machines).
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


def tiny(root: str, *extra: str, steps: int = 2) -> list[str]:
    """Overrides for a run of a few seconds: a small SIREN, few samples and iterations."""
    return [
        f"output.root={root}",
        "optim.name=adam",  # orchestration tests: Adam's fixed iteration counts (other optimisers: own tests)
        f"time.steps={steps}",
        "optim.max_iters=15",
        "optim.init_max_iters=30",
        "optim.rtol=0",  # fixed iteration counts: comparisons do not hinge on a stopping test
        "optim.init_rtol=0",
        "sampling.interior=64",
        "output.resolution=32",
        "output.figure_every=0",
        "network.width=8",
        "device=cpu",
        *extra,
    ]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def _slurm_unavailable() -> str | None:
    if shutil.which("sinfo") is None:
        return "sinfo not on PATH (apt-get install slurmctld slurmd slurm-client munge)"
    if "SLURM_CONF" not in os.environ:
        conf = os.path.join(os.environ.get("INSR_SLURM_DIR", "/tmp/insr-slurm"), "slurm.conf")
        if os.path.exists(conf):
            os.environ["SLURM_CONF"] = conf  # the dev cluster's, as `source env.sh` would set
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"sinfo failed: {exc}"
    states = out.stdout.split()
    if out.returncode != 0 or not states:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return f"no Slurm controller answers ({last[:160]})"
    if not any(s.rstrip("*~#") in ("idle", "mixed", "allocated", "completing") for s in states):
        return f"no usable Slurm node (states: {', '.join(states)})"
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """A Slurm controller that accepts jobs; returns SLURM_CONF (may be empty: system default)."""
    reason = _slurm_unavailable()
    if reason:
        hint = "; start one with: slurm/dev-cluster.sh start && source /tmp/insr-slurm/env.sh"
        if os.environ.get("INSR_REQUIRE_SLURM") == "1":
            pytest.fail(f"INSR_REQUIRE_SLURM=1 but {reason}{hint}")
        pytest.skip(f"Slurm not available: {reason}{hint}")
    return os.environ.get("SLURM_CONF", "")


# -- two xdist workers (pyproject: -n 2 --dist loadgroup) -------------------------------
# Every test gets an xdist_group, so that what must not run twice or side by side stays
# on one worker: all tests on the Slurm dev cluster in one group (they share its two
# one-CPU nodes, and the preemption test takes a whole node), all tests that start a Ray
# runtime in another (one Ray runtime of this suite at a time), and the tests of a module
# that share module-scoped fixtures in one group (each fixture is computed once). Other
# tests are spread over the workers one by one.
def pytest_collection_modifyitems(config, items):
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    shared: dict[str, list[str]] = {}
    for item in items:
        if "slurm_cluster" in getattr(item, "fixturenames", ()):
            continue
        info = getattr(item, "_fixtureinfo", None)
        module = item.nodeid.split("::")[0]
        keys = [f"{module}::{name}" for name, defs in (info.name2fixturedefs.items() if info else ())
                if defs and defs[-1].scope == "module"]
        for key in keys[1:]:
            parent[find(key)] = find(keys[0])
        shared[item.nodeid] = keys
    for item in items:
        module, name = item.nodeid.split("::")[0], item.nodeid.split("::")[-1]
        if "slurm_cluster" in getattr(item, "fixturenames", ()):
            group = "slurm"
        elif module in ("tests/test_ray.py", "tests/test_ray_cluster.py") or "_ray_" in f"_{name}_":
            group = "ray"
        elif shared.get(item.nodeid):
            group = find(shared[item.nodeid][0])
        else:
            continue  # no shared state: either worker
        item.add_marker(pytest.mark.xdist_group(group))
