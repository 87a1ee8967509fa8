"""Optimisers of one sub-problem (``optim.name``): each one module, registered by name.

``adam`` (first order, any objective), ``gauss_newton`` (Levenberg–Marquardt on
least-squares sub-problems, damped Newton–CG on energies), ``lbfgs``.
"""

from insr_hpc.pde.optimizers import adam, gauss_newton, lbfgs  # noqa: F401  (registers)
from insr_hpc.pde.optimizers.base import OPTIMIZERS, MinimizeResult, Optimizer, ParamVector

__all__ = ["OPTIMIZERS", "MinimizeResult", "Optimizer", "ParamVector"]
