"""``insr-hpc status DIR``: every run under DIR, its state and progress.

Reads only ``run.json``, a running run's ``progress.json`` and four small per-step
arrays of the store (``committed``, ``loss``, ``capped``, the error series) through
:mod:`insr_hpc.store_small`, never the store's large arrays nor (but for a finished
hybrid reconstruction recorded before run.json's summary carried its blend weight) its
group metadata, and imports neither torch nor the
workloads: 2 000 runs take a second or two (benchmarks/sweep_expand.py). A finished run
some of whose sub-problems stopped at their iteration cap shows as ``done (capped N)``.

When DIR holds several sweeps, a ``sweep`` column names each run's sweep directory
(relative to DIR); a totals line counts runs per state, steps done over all runs and
capped sub-problems. A running run shows where it is inside its current step from its
``progress.json`` note (``fit 800/2000``, ``step 3 advect 40/100``, ``epoch 12/200``;
:meth:`RunDir.write_progress`). A finished reconstruction shows the error of the weights
it kept (best by validation) and their epoch, a hybrid its blend weight, and a
``warning`` column when some run's selection rested on too few independent validation
clusters (``thin validation (9 clusters)``; not a failure: the state stays ``done``).
:func:`as_record` is one run as plain JSON (``status --json``).

A directory holding a ``store.zarr`` but neither ``run.json`` nor ``spec.json`` (deleted)
is still a run: it shows as ``unknown`` with how many steps its store has committed.
Nothing is written: what ran is recorded in the store (``attrs["run_id"]``,
``attrs["config"]``), from which ``submit`` can restore the spec.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from typing import Any

import numpy as np

from insr_hpc.rundir import FINAL, STATES, RunDir, pid_alive
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


def sweep_of(run_dir: str, root: str) -> str:
    """The run's sweep directory relative to ``root`` (``.``: the runs lie directly in
    ``root``; the parent's name when ``root`` is the run directory itself)."""
    parent = os.path.dirname(os.path.abspath(run_dir))
    rel = os.path.relpath(parent, os.path.abspath(root))
    return os.path.basename(parent) if rel == os.pardir or rel.startswith(os.pardir + os.sep) else rel


def run_status(run_dir: str, root: str | None = None) -> dict[str, Any]:
    """One run's state (its run.json, as recorded) and progress (from its store and its
    progress note); ``root``: the directory status was asked about (sets ``sweep``)."""
    rd = RunDir(run_dir)
    lost = not os.path.exists(rd.state_file) and not os.path.exists(rd.spec)
    state = {"state": UNKNOWN} if lost else rd.read_state()
    state["recorded_state"] = state.get("state") if not lost else None
    state.setdefault("run_id", os.path.basename(run_dir))
    state["run_dir"] = run_dir
    state["sweep"] = sweep_of(run_dir, root) if root is not None else None
    state.update(steps_done=0, steps_total=None, last_loss=None, last_error=None, capped=None, kept_epoch=None,
                 blend_weight=None, progress=None, warning=None, validation_clusters=None)
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
    _kept(state, path)
    if lost:
        what = (f"store unreadable ({state['store_error'][:120]})" if "store_error" in state
                else f"store has {state['steps_done']} committed steps")
        state["reason"] = f"run files missing ({RunDir.STATE}, {RunDir.SPEC}); {what}"
    # A local run whose process vanished without recording why.
    if state.get("state") == "running" and state.get("host") == socket.gethostname() and state.get("pid"):
        if state.get("backend", "local") == "local" and not pid_alive(int(state["pid"])):
            state["state"] = "failed"
            state["reason"] = f"process {state['pid']} is gone (killed?); submit again to resume"
    if state.get("state") == "running":
        state["progress"] = _progress(rd, state)
    return state


def _kept(state: dict[str, Any], store: str) -> None:
    """A finished reconstruction (its summary names the epoch it kept): the kept
    weights' error (not the last evaluated one), their epoch, and a hybrid's blend
    weight (from the summary; from the store's attributes for runs recorded before it
    was part of the summary: one small JSON read)."""
    summary = state.get("summary")
    if not isinstance(summary, dict) or summary.get("selected_epoch") is None:
        return
    # a warning that is not a failure (thin validation evidence); absent in older summaries
    if summary.get("warning"):
        state["warning"] = str(summary["warning"])
    if isinstance(summary.get("validation_clusters"), int):
        state["validation_clusters"] = summary["validation_clusters"]
    try:
        state["kept_epoch"] = int(summary["selected_epoch"])
    except (TypeError, ValueError):
        return
    value = summary.get("mse")
    if isinstance(value, (int, float)) and math.isfinite(value):
        state["last_error"] = ("mse", float(value))
    if "blend_weight" in summary:
        weight = summary["blend_weight"]
    else:
        try:
            with open(os.path.join(store, "zarr.json"), encoding="utf-8") as fh:
                weight = (json.load(fh).get("attributes") or {}).get("blend_weight")
        except (OSError, ValueError, RecursionError, AttributeError):
            weight = None
    state["blend_weight"] = float(weight) if isinstance(weight, (int, float)) else None


def _progress(rd: RunDir, state: dict[str, Any]) -> dict[str, Any] | None:
    """The running run's progress note, unless it is older than this attempt or than the
    step it describes (a step committed since)."""
    note = rd.read_progress()
    if not note or not isinstance(note.get("time"), (int, float)):
        return None
    started = state.get("started")
    if isinstance(started, (int, float)) and note["time"] < started:  # an earlier attempt's
        return None
    step = note.get("step")
    if isinstance(step, int) and step < state.get("steps_done", 0):  # that step is committed: stale
        return None
    return note


def progress_text(note: dict[str, Any] | None, now: float | None = None) -> str:
    """``fit 800/2000`` (step 0), ``step 3 advect 40/100``, ``epoch 12/200``; with its age
    when the note is over a minute old (a long silence: a hung run?)."""
    if not note:
        return ""
    of = note.get("of")
    if "epoch" in note:
        text = f"epoch {note['epoch']}/{of}"
    elif "substep" in note:
        step = note.get("step")
        where = f"{note['substep']}" if step == 0 else f"step {step} {note['substep']}"
        text = f"{where} {note.get('iteration', '?')}/{of}"
    else:
        return ""
    age = (now if now is not None else time.time()) - float(note.get("time", 0))
    if age > 60:
        text += f" ({_age(age)} ago)"
    return text


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def is_final(state: dict[str, Any]) -> bool:
    """Will this run not change without a new submit (done, suspect, failed, cancelled, unknown)?"""
    return state.get("state") in (*FINAL, UNKNOWN)


RECORD_KEYS = ("run", "sweep", "run_dir", "state", "recorded_state", "reason", "steps_done", "steps_total", "capped",
               "loss", "error", "blend_weight", "warning", "validation_clusters", "backend", "job_id", "job_state", "progress", "progress_text",
               "attempts", "earlier_attempts", "host", "pid", "started", "ended", "updated", "store_error")


def as_record(state: dict[str, Any]) -> dict[str, Any]:
    """One run as plain JSON, every key of :data:`RECORD_KEYS` present (None: not known).
    ``state`` is what status concludes (a local run whose process is gone: ``failed``),
    ``recorded_state`` what run.json says; ``reason``, ``backend``, ``job_id``, ``host``,
    ``pid``, ``attempts``, ``started``, ``ended``, ``updated`` are run.json's (``reason``:
    status's when it overrides the state); ``capped``: sub-problems stopped at their
    iteration cap and sub-problems run; ``error``: the last evaluated error (PDE), or a
    finished reconstruction's kept weights' (``epoch``: the kept epoch)."""
    capped = state.get("capped")
    err = state.get("last_error")
    record = {key: state.get(key) for key in RECORD_KEYS}
    record.update(
        run=state.get("run_id"),
        capped={"stopped_at_cap": capped[0], "substeps": capped[1]} if capped else None,
        loss=state.get("last_loss"),
        error={"name": err[0], "value": err[1], "epoch": state.get("kept_epoch")} if err else None,
        progress_text=progress_text(state.get("progress")) or None,
    )
    return record


def _short_warning(st: dict[str, Any]) -> str:
    """``thin validation (9 clusters)``: the table's short form of a run's warning (the
    whole text is in run.json's summary and the store's ``warning`` attribute)."""
    text = str(st.get("warning"))
    if text.startswith("thin validation"):
        n = st.get("validation_clusters")
        return f"thin validation ({n} clusters)" if n is not None else "thin validation"
    return text[:60]


def _fmt(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3e}"


def totals(states: list[dict[str, Any]]) -> str:
    """``12 runs: 9 done, 2 running, 1 failed; steps 830/1200; capped sub-problems 4/2490``."""
    counts: dict[str, int] = {}
    for st in states:
        counts[st.get("state", "?")] = counts.get(st.get("state", "?"), 0) + 1
    order = [s for s in (*STATES, UNKNOWN) if s in counts] + sorted(set(counts) - {*STATES, UNKNOWN})
    text = f"{len(states)} run{'s' if len(states) != 1 else ''}: " + ", ".join(f"{counts[s]} {s}" for s in order)
    known = [st for st in states if st.get("steps_total")]
    if known:
        text += (f"; steps {sum(st['steps_done'] for st in known)}/{sum(st['steps_total'] for st in known)}"
                 + (f" ({len(states) - len(known)} run(s) without a store yet)" if len(known) < len(states) else ""))
    capped = [st["capped"] for st in states if st.get("capped")]
    if capped:
        text += f"; capped sub-problems {sum(c[0] for c in capped)}/{sum(c[1] for c in capped)}"
    return text


def format_table(states: list[dict[str, Any]], total: bool = True) -> str:
    """The runs as a table: a ``sweep`` column when they come from more than one sweep,
    ``progress`` when some run reports where it is inside a step, ``blend`` when some run
    is a hybrid reconstruction; then (``total``) the totals line."""
    sweeps = {st.get("sweep") for st in states}
    show_sweep = len(sweeps) > 1
    now = time.time()
    texts = [progress_text(st.get("progress"), now) for st in states]
    show_progress = any(texts)
    show_blend = any(st.get("blend_weight") is not None for st in states)
    show_warning = any(st.get("warning") for st in states)
    header = ["run", "state", "steps", "capped"] + (["progress"] if show_progress else []) + ["last loss", "error"] \
        + (["blend"] if show_blend else []) + (["warning"] if show_warning else []) + ["backend/job", "reason"]
    rows = [(["sweep"] if show_sweep else []) + header]
    for st, prog in zip(states, texts, strict=True):
        total_steps = st.get("steps_total")
        steps = f"{st['steps_done']}/{total_steps}" if total_steps else "-"
        # sub-problems whose optimiser stopped at its iteration cap / sub-problems run ("-": unknown)
        capped = st.get("capped")
        capped_s = f"{capped[0]}/{capped[1]}" if capped and capped[1] else "-"
        shown = st.get("state", "?")
        if capped and capped[0] and shown in ("done", "suspect"):  # finished, but not every sub-problem converged
            shown = f"{shown} (capped {capped[0]})"
        err = st.get("last_error")
        err_s = f"{err[0]}={err[1]:.3e}" if err else "-"
        if err and st.get("kept_epoch") is not None:  # a reconstruction's kept (best-by-validation) weights
            err_s += f" (epoch {st['kept_epoch']})"
        job = f"{st.get('backend', '-')}/{st.get('job_id', '-')}" if st.get("backend") else "-"
        if st.get("job_state"):  # live state from the engine (e.g. squeue), when asked
            job += f" ({st['job_state']})"
        reason = st.get("reason") or ""
        if st.get("earlier_attempts"):  # retried by its backend: say what happened to the attempt before
            reason = "; ".join(filter(None, [reason, st["earlier_attempts"][-1]]))
        blend = st.get("blend_weight")
        row = ([st.get("sweep") or "."] if show_sweep else []) + [st["run_id"], shown, steps, capped_s] \
            + ([prog or "-"] if show_progress else []) + [_fmt(st.get("last_loss")), err_s] \
            + ([f"{blend:.3f}" if blend is not None else "-"] if show_blend else []) \
            + ([_short_warning(st) if st.get("warning") else "-"] if show_warning else []) + [job, reason]
        rows.append(row)
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    table = "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
    lost = sum(st.get("state") == UNKNOWN for st in states)
    if lost:
        table += (f"\n{lost} run(s) {UNKNOWN}: {RunDir.STATE} and {RunDir.SPEC} are gone, only the store is left "
                  "(its attrs run_id and config say what ran)")
    if total and states:
        table += "\n" + totals(states)
    return table
