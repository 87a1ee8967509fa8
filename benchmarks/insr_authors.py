"""Harness for timing the INSR authors' own model classes (honglin-c/INSR-PDE) on CPU,
used by benchmarks/advection.py and benchmarks/euler.py through ``--authors-repo``.

Their code is not shipped: ``--authors-repo`` is a checkout of their repository
(``git clone https://github.com/honglin-c/INSR-PDE``). From it this module imports their
config parser (``config.py``), ``base/`` and one PDE package (``advection/`` or
``fluid/``), and nothing else. What it changes around their code, without editing it:

* the device: their ``BaseModel`` pins ``cuda:0``; the subclass made by :func:`load_model`
  reads ``device`` as CPU;
* ``tensorboardX`` (imported by ``base/baseModel.py`` for logging only) is replaced by a
  no-op stand-in when it is not installed;
* torch ≥ 2.7 no longer accepts ``ReduceLROnPlateau(verbose=...)``, which their
  ``_reset_optimizer`` passes; while their code runs the keyword is dropped
  (:func:`compat`), the schedule is otherwise torch's own.

Timing: one iteration is what one pass of their ``_training_loop`` computes: the
undecorated loss function, their ``_update_network`` (backward, Adam step, scheduler
step) and reading the losses (``.item()``); the loop's TensorBoard logging and progress
bar are left out. CPU seconds are ``time.process_time`` (the whole process), wall seconds
``time.perf_counter``.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import tempfile
import time
import types
import warnings
from dataclasses import dataclass

import torch


class _NoLog:
    """Stands in for tensorboardX's SummaryWriter: drops scalars, closes figures."""

    def __init__(self, *args, **kwargs):
        pass

    def add_scalars(self, *args, **kwargs):
        pass

    def add_scalar(self, *args, **kwargs):
        pass

    def add_figure(self, tag, figure, *args, **kwargs):
        import matplotlib.pyplot as plt

        plt.close(figure)

    def close(self):
        pass


def _install_tensorboardx_stub() -> None:
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        stub = types.ModuleType("tensorboardX")
        stub.SummaryWriter = _NoLog
        sys.modules["tensorboardX"] = stub


@contextlib.contextmanager
def compat():
    """While their code runs: ReduceLROnPlateau accepts (and ignores) ``verbose``, and
    the warning about their ``scheduler.step(loss)`` on a tensor that requires grad is
    silenced."""
    sched = torch.optim.lr_scheduler
    original = sched.ReduceLROnPlateau

    class Plateau(original):
        def __init__(self, *args, verbose=False, **kwargs):
            super().__init__(*args, **kwargs)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
        if "verbose" not in inspect.signature(original.__init__).parameters:
            sched.ReduceLROnPlateau = Plateau
        try:
            yield
        finally:
            sched.ReduceLROnPlateau = original


def load_model(repo: str, pde: str, script_args: list[str]):
    """An instance of their model class for ``pde`` ('advection' | 'fluid'), configured
    by their own argument parser from ``script_args`` (a scripts/*.sh line), on CPU."""
    repo = os.path.abspath(repo)
    if not os.path.exists(os.path.join(repo, "base", "baseModel.py")):
        raise SystemExit(f"--authors-repo {repo}: not a checkout of honglin-c/INSR-PDE (no base/baseModel.py)")
    if repo not in sys.path:
        sys.path.insert(0, repo)
    _install_tensorboardx_stub()
    os.environ.setdefault("MPLBACKEND", "Agg")
    from config import Config  # their argparse configuration

    if pde == "fluid":
        from fluid import Fluid2DModel as Model
    elif pde == "advection":
        from advection import Advection1DModel as Model
    else:
        raise ValueError(pde)

    parser_owner = Config.__new__(Config)  # their parser without Config.__init__'s side effects (dirs, prompts)
    parser_owner.is_train = True
    argv = sys.argv
    sys.argv = ["main.py", pde, *script_args]
    try:
        _, cfg = parser_owner.parse()
    finally:
        sys.argv = argv
    scratch = tempfile.mkdtemp(prefix="insr-authors-")
    cfg.exp_dir = scratch
    cfg.log_dir = os.path.join(scratch, "log")
    cfg.model_dir = os.path.join(scratch, "model")

    class OnCPU(Model):
        device = property(lambda self: torch.device("cpu"), lambda self, value: None)

    with compat():
        model = OnCPU(cfg)
    model.tb = _NoLog()
    return model


def undecorated(model, name: str):
    """The per-iteration function inside their ``@BaseModel._training_loop`` method."""
    loop = getattr(type(model), name)
    return inspect.getclosurevars(loop).nonlocals["func"]


@dataclass
class IterCost:
    cpu_ms: float
    wall_ms: float
    iters: int


def time_iterations(model, name: str, iters: int, warmup: int = 2) -> IterCost:
    """Per-iteration CPU and wall ms of sub-problem ``name`` (a fresh optimiser, as their
    loop makes, ``warmup`` untimed iterations, then ``iters`` timed ones)."""
    func = undecorated(model, name)

    def one():
        loss_dict = func(model)
        model._update_network(loss_dict)
        {k: v.item() for k, v in loss_dict.items()}

    with compat():
        model._reset_optimizer()
        for _ in range(warmup):
            one()
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(iters):
            one()
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return IterCost(1e3 * cpu / iters, 1e3 * wall / iters, iters)


@dataclass
class PlateauRule:
    lr: float  # starting learning rate
    patience: int
    factor: float
    threshold: float  # relative improvement that counts as better
    stop_lr: float  # their loop stops once lr <= this (early_stop)
    max_iters: int
    min_iters: int  # the loss never improves after the first iteration

    def describe(self) -> str:
        return (f"Adam lr {self.lr:g}, ReduceLROnPlateau ×{self.factor:g} after {self.patience} iterations without a "
                f"{self.threshold:g} relative improvement, stop at lr ≤ {self.stop_lr:g} or {self.max_iters} iterations")


def plateau_rule(model) -> PlateauRule:
    """Their stopping rule, read off the scheduler their ``_reset_optimizer`` builds; the
    fewest iterations it allows are counted by stepping that scheduler with a loss that
    never improves (every improvement only restarts the patience count)."""
    cfg = model.cfg
    with compat():
        model._reset_optimizer()
        sched, opt = model.scheduler, model.optimizer
        rule = dict(lr=opt.param_groups[0]["lr"], patience=sched.patience, factor=sched.factor,
                    threshold=sched.threshold, stop_lr=model.min_lr, max_iters=cfg.max_n_iters)
        n = 0
        while n < cfg.max_n_iters:
            n += 1
            sched.step(1.0)
            if cfg.early_stop and opt.param_groups[0]["lr"] <= model.min_lr:
                break
        model._reset_optimizer()
    return PlateauRule(**rule, min_iters=n)


def run_to_convergence(model, name: str) -> tuple[int, float, float]:
    """Run their decorated loop ``name`` to its own stopping rule: (iterations, CPU s, wall s)."""
    with compat():
        c0, w0 = time.process_time(), time.perf_counter()
        getattr(model, name)()
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return model.train_step, cpu, wall
