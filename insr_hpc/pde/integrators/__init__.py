"""Integrators: each one module, registered by name (``integrator.name``)."""

from insr_hpc.pde.integrators import euler, variational  # noqa: F401  (registers)
from insr_hpc.pde.integrators.base import INTEGRATORS, Integrator, Term

__all__ = ["INTEGRATORS", "Integrator", "Term"]
