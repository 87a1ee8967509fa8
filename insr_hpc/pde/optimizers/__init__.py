"""Optimisers of one sub-problem (``optim.name``): each one module, declared here with
its config dataclass (``pde/optimizers/params.py``, torch-free), imported on first use.

``adam`` (first order, any objective), ``gauss_newton`` (Levenberg–Marquardt on
least-squares sub-problems, damped Newton–CG on energies), ``lbfgs``. Capability
``packable``: has a packed version (insr_hpc/pde/optimizers/packed.py, launch.pack).
``MinimizeResult``, ``Optimizer`` and ``ParamVector`` are imported from ``base.py`` when
first asked for.
"""

from insr_hpc.pde.optimizers.params import AdamParams, GaussNewtonParams, LBFGSParams
from insr_hpc.registry import Registry

OPTIMIZERS: Registry = Registry("optimiser", "optim.name", capabilities=("packable",))
OPTIMIZERS.default = "adam"

OPTIMIZERS.declare("adam", "insr_hpc.pde.optimizers.adam:Adam", AdamParams, packable=True)
OPTIMIZERS.declare("gauss_newton", "insr_hpc.pde.optimizers.gauss_newton:GaussNewton", GaussNewtonParams,
                   packable=True)
OPTIMIZERS.declare("lbfgs", "insr_hpc.pde.optimizers.lbfgs:LBFGS", LBFGSParams)

__all__ = ["OPTIMIZERS", "MinimizeResult", "Optimizer", "ParamVector"]


def __getattr__(name: str):  # the torch-side names, imported when asked for
    if name in ("MinimizeResult", "Optimizer", "ParamVector", "Reducer"):
        from insr_hpc.pde.optimizers import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
