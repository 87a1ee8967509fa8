"""Integrators (``integrator.name``): each one module, declared here with its config
dataclass (``pde/integrators/params.py``, torch-free) and the term kind it ``accepts``
(``"Term"`` or ``"PotentialTerm"``), imported on first use (``INTEGRATORS.get``).
``Integrator`` and ``Term`` are imported from ``base.py`` when first asked for."""

from insr_hpc.pde.integrators.params import (
    ExplicitEulerParams,
    ImplicitEulerParams,
    MidpointParams,
    VariationalEulerParams,
)
from insr_hpc.registry import Registry

INTEGRATORS: Registry = Registry("integrator", "integrator.name", capabilities=("accepts",))
INTEGRATORS.default = "midpoint"

INTEGRATORS.declare("explicit_euler", "insr_hpc.pde.integrators.euler:ExplicitEuler", ExplicitEulerParams,
                    accepts="Term")
INTEGRATORS.declare("implicit_euler", "insr_hpc.pde.integrators.euler:ImplicitEuler", ImplicitEulerParams,
                    accepts="Term")
INTEGRATORS.declare("midpoint", "insr_hpc.pde.integrators.euler:Midpoint", MidpointParams, accepts="Term")
INTEGRATORS.declare("variational", "insr_hpc.pde.integrators.variational:VariationalEuler", VariationalEulerParams,
                    accepts="PotentialTerm")

__all__ = ["INTEGRATORS", "Integrator", "Term"]


def __getattr__(name: str):  # the torch-side names, imported when asked for
    if name in ("Integrator", "Term", "PotentialTerm"):
        from insr_hpc.pde.integrators import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
