"""TensorBoard HParams across a sweep: one session per run under ``DIR/report/tensorboard``.

Each run becomes a session whose hparams are its swept keys (plus its state) and whose
metrics are its final and worst errors, seconds per step and steps done, so the HParams
dashboard's table, parallel-coordinates and scatter views compare the runs of a sweep
(``tensorboard --logdir DIR/report/tensorboard``, or ``--logdir DIR`` for these beside
every run's own curves). Written by rank 0 of ``insr-hpc report``; rewritten each time.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Sequence
from typing import Any

from insr_hpc.analysis.collect import RunRecord


def _hparam_value(value: Any) -> bool | float | str:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return float(value)
    return str(value)


def run_metrics(rec: RunRecord) -> dict[str, float]:
    """``final/<error>``, ``worst/<error>``, ``seconds_per_step`` and ``steps_done``."""
    metrics = {f"final/{k}": v for k, v in rec.final.items()}
    metrics.update({f"worst/{k}": v for k, v in rec.worst.items()})
    metrics["seconds_per_step"] = rec.seconds_total / rec.steps_done if rec.steps_done else math.nan
    metrics["steps_done"] = float(rec.steps_done)
    return metrics


def session_name(run: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", run)


def write_hparams(logdir: str, records: Sequence[RunRecord]) -> str:
    """Write one HParams session per run under ``logdir`` (emptied first)."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    shutil.rmtree(logdir, ignore_errors=True)
    keys: list[str] = []
    for r in records:
        keys += [k for k in r.swept if k not in keys]
    domains: dict[str, list] = {}
    for key in keys:
        values = {_hparam_value(r.swept[key]) for r in records if key in r.swept}
        domains[key] = sorted(values, key=lambda v: (str(type(v)), v))
    domains["state"] = sorted({r.state for r in records})
    metric_names: list[str] = []
    for r in records:
        metric_names += [m for m in run_metrics(r) if m not in metric_names]
    # the experiment (every hparam with its values, every metric) once, at the log root
    example = {k: v[0] for k, v in domains.items()}
    experiment, _, _ = hparams(example, {m: 0.0 for m in metric_names}, hparam_domain_discrete=domains)
    with SummaryWriter(logdir) as writer:
        writer.file_writer.add_summary(experiment)
    for r in records:
        hp = {k: _hparam_value(r.swept[k]) for k in keys if k in r.swept}  # a run without a key leaves it blank
        hp["state"] = r.state
        metrics = run_metrics(r)
        # every session declares every metric (a missing one would hide the run's column)
        declared = {m: metrics.get(m, math.nan) for m in metric_names}
        _, start, end = hparams(hp, declared, hparam_domain_discrete={k: v for k, v in domains.items() if k in hp})
        with SummaryWriter(os.path.join(logdir, session_name(r.run))) as writer:
            for summary in (start, end):
                writer.file_writer.add_summary(summary)
            for name, value in declared.items():
                if math.isfinite(value):
                    writer.add_scalar(name, value, r.steps_done)
    return logdir
