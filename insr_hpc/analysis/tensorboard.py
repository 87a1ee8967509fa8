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
import time
from collections.abc import Sequence
from typing import Any

from google.protobuf import struct_pb2
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

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
    metrics["seconds_per_step"] = rec.seconds_per_step  # PDE: after step 0 (the initial fit)
    metrics["steps_done"] = float(rec.steps_done)
    return metrics


def session_name(run: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", run)


def _summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> summary_pb2.Summary:
    meta = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME, content=data.SerializeToString())
    )
    return summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, metadata=meta)])


def _value(v: bool | float | str) -> struct_pb2.Value:
    if isinstance(v, bool):
        return struct_pb2.Value(bool_value=v)
    if isinstance(v, float):
        return struct_pb2.Value(number_value=v)
    return struct_pb2.Value(string_value=v)


def _hparam_info(name: str, values: list) -> api_pb2.HParamInfo:
    kind = {bool: api_pb2.DATA_TYPE_BOOL, float: api_pb2.DATA_TYPE_FLOAT64}.get(type(values[0]), api_pb2.DATA_TYPE_STRING)
    domain = struct_pb2.ListValue(values=[_value(v) for v in values])
    return api_pb2.HParamInfo(name=name, type=kind, domain_discrete=domain)


class _Events:
    """An event file written with tensorboard's own writer (no torch, no TensorFlow)."""

    def __init__(self, logdir: str):
        os.makedirs(logdir, exist_ok=True)
        self.writer = EventFileWriter(logdir)
        self.writer.add_event(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def summary(self, summary: summary_pb2.Summary, step: int = 0) -> None:
        self.writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.summary(summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)]), step)

    def close(self) -> None:
        self.writer.close()


def write_hparams(logdir: str, records: Sequence[RunRecord]) -> str:
    """Write the experiment at ``logdir`` and one HParams session per run below it
    (``logdir`` is emptied first)."""
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
    experiment = api_pb2.Experiment(
        hparam_infos=[_hparam_info(k, v) for k, v in domains.items()],
        metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=m)) for m in metric_names],
    )
    root = _Events(logdir)
    root.summary(_summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(
        version=metadata.PLUGIN_DATA_VERSION, experiment=experiment)))
    root.close()
    for r in records:
        hp = {k: _hparam_value(r.swept[k]) for k in keys if k in r.swept}  # a run without a key leaves it blank
        hp["state"] = r.state
        start = plugin_data_pb2.SessionStartInfo(group_name=session_name(r.run), start_time_secs=time.time())
        for k, v in hp.items():
            start.hparams[k].CopyFrom(_value(v))
        status = api_pb2.STATUS_SUCCESS if r.state == "done" else (
            api_pb2.STATUS_FAILURE if r.state == "failed" else api_pb2.STATUS_RUNNING)
        end = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
        events = _Events(os.path.join(logdir, session_name(r.run)))
        version = metadata.PLUGIN_DATA_VERSION
        events.summary(_summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(version=version, session_start_info=start)))
        for name, value in run_metrics(r).items():
            if math.isfinite(value):
                events.scalar(name, value, r.steps_done)
        events.summary(_summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(version=version, session_end_info=end)))
        events.close()
    return logdir
