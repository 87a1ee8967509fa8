"""``insr-hpc status DIR``: every run under DIR, its state and progress.

Reads only ``run.json`` and four small per-step arrays of the store (``committed``,
``loss``, ``capped``, the error series) through :mod:`insr_hpc.store_small`, never the
store's group metadata or its large arrays, and imports neither torch nor the
workloads: 2 000 runs take a second or two (benchmarks/sweep_expand.py). A finished run
some of whose sub-problems stopped at their iteration cap shows as ``done (capped N)``.

A directory holding a ``store.zarr`` but neither ``run.json`` nor ``spec.json`` (deleted)
is still a run: it shows as ``unknown`` with how many steps its store has committed.
Nothing is written: what ran is recorded in the store (``attrs["run_id"]``,
``attrs["config"]``), from which ``submit`` can restore the spec.
"""

from __future__ import annotations

import math
import os
import socket
from typing import Any

import numpy as np

from insr_hpc.rundir import RunDir, pid_alive
from insr_hpc.store_small import read_small


UNKNOWN = "unknown"  # a run directory whose run.json and spec.json are both gone


def find_runs(root: str) -> list[str]:
    """Run directories (those holding spec.json, run.json or a store.zarr) under ``root``, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        if RunDir.is_run_dir(filenames) or RunDir.STORE in dirnames:
            found.append(dirpath)
            dirnames[:] = []  # a run directory holds no nested runs
        else:
            dirnames[:] = [d for d in dirnames if not d.endswith(".zarr")]
    return sorted(found)


def run_status(run_dir: str) -> dict[str, Any]:
    rd = RunDir(run_dir)
    lost = not os.path.exists(rd.state_file) and not os.path.exists(rd.spec)
    state = {"state": UNKNOWN} if lost else rd.read_state()
    state.setdefault("run_id", os.path.basename(run_dir))
    state["run_dir"] = run_dir
    state.update(steps_done=0, steps_total=None, last_loss=None, last_error=None, capped=None)
    path = rd.store
    if os.path.exists(os.path.join(path, "zarr.json")):
        try:
            done = read_small(os.path.join(path, "committed")).astype(bool)
            n = int(np.argmin(done)) if not done.all() else len(done)
            state["steps_done"], state["steps_total"] = n, len(done)
            if n:
                loss = np.asarray(read_small(os.path.join(path, "loss"))[n - 1], dtype=float)
                state["last_loss"] = float(np.nanmax(loss)) if np.isfinite(loss).any() else None
                for name in ("rel_l2", "mse", "error"):
                    if os.path.isdir(os.path.join(path, name)):  # the last evaluated value (recon: every few epochs)
                        seen = np.asarray(read_small(os.path.join(path, name))[:n], dtype=float).reshape(n, -1)[:, 0]
                        finite = np.flatnonzero(np.isfinite(seen))
                        if finite.size:
                            state["last_error"] = (name, float(seen[finite[-1]]))
                        break
            if os.path.isdir(os.path.join(path, "capped")):  # absent in stores from before it: unknown
                flags = np.asarray(read_small(os.path.join(path, "capped"))[:n]) if n else np.zeros(0)
                # (sub-problems stopped at their iteration cap, sub-problems run) over the committed steps
                state["capped"] = (int((flags == 1).sum()), int((flags >= 0).sum()))
        except Exception as exc:  # a store being created right now, or damaged
            state["store_error"] = f"{type(exc).__name__}: {exc}"
    if lost:
        what = (f"store unreadable ({state['store_error'][:120]})" if "store_error" in state
                else f"store has {state['steps_done']} committed steps")
        state["reason"] = f"run files missing ({RunDir.STATE}, {RunDir.SPEC}); {what}"
    # A local run whose process vanished without recording why.
    if state.get("state") == "running" and state.get("host") == socket.gethostname() and state.get("pid"):
        if state.get("backend", "local") == "local" and not pid_alive(int(state["pid"])):
            state["state"] = "failed"
            state["reason"] = f"process {state['pid']} is gone (killed?); submit again to resume"
    return state


def _fmt(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3e}"


def format_table(states: list[dict[str, Any]]) -> str:
    rows = [("run", "state", "steps", "capped", "last loss", "error", "backend/job", "reason")]
    for st in states:
        total = st.get("steps_total")
        steps = f"{st['steps_done']}/{total}" if total else "-"
        # sub-problems whose optimiser stopped at its iteration cap / sub-problems run ("-": unknown)
        capped = st.get("capped")
        capped_s = f"{capped[0]}/{capped[1]}" if capped and capped[1] else "-"
        shown = st.get("state", "?")
        if capped and capped[0] and shown in ("done", "suspect"):  # finished, but not every sub-problem converged
            shown = f"{shown} (capped {capped[0]})"
        err = st.get("last_error")
        err_s = f"{err[0]}={err[1]:.3e}" if err else "-"
        job = f"{st.get('backend', '-')}/{st.get('job_id', '-')}" if st.get("backend") else "-"
        if st.get("job_state"):  # live state from the engine (e.g. squeue), when asked
            job += f" ({st['job_state']})"
        reason = st.get("reason") or ""
        if st.get("earlier_attempts"):  # retried by its backend: say what happened to the attempt before
            reason = "; ".join(filter(None, [reason, st["earlier_attempts"][-1]]))
        rows.append((st["run_id"], shown, steps, capped_s, _fmt(st.get("last_loss")), err_s, job, reason))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    table = "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
    lost = sum(st.get("state") == UNKNOWN for st in states)
    if lost:
        table += (f"\n{lost} run(s) {UNKNOWN}: {RunDir.STATE} and {RunDir.SPEC} are gone, only the store is left "
                  "(its attrs run_id and config say what ran)")
    return table
