"""Small, fast configs and CLI helpers shared by the tests."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SMALL_ADVECTION = {
    "name": "adv",
    "seed": 0,
    "device": "cpu",
    "problem": {"case": "advection"},
    "network": {"model": "siren", "depth": 2, "width": 20},
    "integrator": {"name": "midpoint"},
    "optim": {"lr": 1e-3, "max_iters": 100, "init_max_iters": 600, "window": 25},
    "time": {"dt": 0.05, "steps": 8},
    "sampling": {"interior": 1000, "boundary": 2},
    "output": {"resolution": 128, "figure_every": 4},
}


def write_config(tmp_path, data: dict, name: str = "cfg.yaml") -> str:
    path = os.path.join(str(tmp_path), name)
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(data, fh)
    return path


def cli(*args: str, cwd: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``insr-hpc`` in a fresh interpreter (exit codes and stderr as a user sees them)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    return subprocess.run(
        [sys.executable, "-m", "insr_hpc", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )
