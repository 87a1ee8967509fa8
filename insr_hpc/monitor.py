"""TensorBoard logging for one run: iteration-indexed and step-indexed writers.

Two event directories (``tb/iters`` and ``tb/steps``) so that a resumed run can purge
each from the right index: events after the last committed step are discarded when
the writer reopens, so nothing appears twice after a crash.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from torch.utils.tensorboard import SummaryWriter


class Monitor:
    def __init__(self, logdir: str, resume_step: int, resume_iter: int, log_every: int, enabled: bool = True):
        self.enabled = enabled
        self.log_every = log_every
        self.logdir = logdir
        if not enabled:
            return
        self.iters = SummaryWriter(os.path.join(logdir, "iters"), purge_step=resume_iter or None)
        self.steps = SummaryWriter(os.path.join(logdir, "steps"), purge_step=resume_step or None)

    def iteration_losses(self, tag: str, losses: list[float], first_iter: int) -> None:
        """Every ``log_every``-th loss of a sub-problem, indexed by global iteration."""
        if not self.enabled:
            return
        for k, value in enumerate(losses):
            if (first_iter + k) % self.log_every == 0:
                self.iters.add_scalar(f"loss/{tag}", value, first_iter + k)

    def step_scalars(self, step: int, values: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        for tag, value in values.items():
            self.steps.add_scalar(tag, value, step)

    def step_figure(self, step: int, tag: str, fig) -> None:
        if not self.enabled or fig is None:
            return
        import matplotlib.pyplot as plt

        self.steps.add_figure(tag, fig, step, close=True)
        plt.close(fig)

    def hparams(self, hparams: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        clean = {k: (v if isinstance(v, int | float | str | bool) else str(v)) for k, v in hparams.items()}
        self.steps.add_hparams(clean, {f"hparam/{k}": v for k, v in metrics.items()}, run_name="hparams")

    def close(self) -> None:
        if self.enabled:
            self.iters.close()
            self.steps.close()
