"""Feedback while a reconstruction trains: a line per evaluation into the run's
``log.txt``, and progress lines on stdout when it is not a terminal (a batch log)."""

from __future__ import annotations

import os
import sys

import numpy as np

from insr_hpc.rundir import RunDir


class ProgressLog:
    """One line per evaluation into ``log.txt``, and on stdout every ``every`` epochs when
    stdout is not a terminal (a batch log; a terminal has the tqdm bar instead)."""

    def __init__(self, run_dir: str, run_id: str, total: int, every: int, enabled: bool):
        self.run_id, self.total, self.every, self.enabled = run_id, total, every, enabled
        self.path = RunDir(run_dir).log
        self.to_stdout = enabled and not _isatty(sys.stdout)
        # under the local backend stdout *is* log.txt: write each line once
        self.to_file = enabled and not _same_file(sys.stdout, self.path)

    def line(self, epoch: int, values: dict[str, float], units: str | None) -> str:
        parts = [f"{self.run_id} epoch {epoch}/{self.total}"]
        for key in ("loss", "val_mse", "mse", "mse_unobserved"):
            if np.isfinite(values.get(key, np.nan)):
                parts.append(f"{key} {values[key]:.3e}")
        if np.isfinite(values.get("rmse", np.nan)):
            parts.append(f"rmse {values['rmse']:.3g}{' ' + units if units else ''}")
        parts.append(f"{values['seconds']:.2f} s/epoch")
        return ", ".join(parts)

    def epoch(self, epoch: int, values: dict[str, float], units: str | None, evaluated: bool) -> None:
        if not self.enabled:
            return
        text = self.line(epoch, values, units)
        if evaluated and self.to_file:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(text + "\n")
        if self.to_stdout and (evaluated or epoch % self.every == 0):
            print(text, flush=True)

    def note(self, text: str) -> None:
        if not self.enabled:
            return
        if self.to_file:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(f"{self.run_id}: {text}\n")
        if self.to_stdout:
            print(f"{self.run_id}: {text}", flush=True)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _same_file(stream, path: str) -> bool:
    try:
        return os.path.exists(path) and os.path.samestat(os.fstat(stream.fileno()), os.stat(path))
    except (AttributeError, ValueError, OSError):
        return False
