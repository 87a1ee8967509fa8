"""PDE cases (``problem.case``): each one module, declared here with its config
dataclass (``pde/cases/params.py``, torch-free) and capabilities, imported on first use
(``CASES.get``).

Capabilities: ``packable`` (see ``Case.pack_values``); ``term_kind``, the name of the
term class the case hands its integrator (``"Term"``, ``"PotentialTerm"``; None: the
case integrates in time itself), checked against an integrator's ``accepts`` when the
config is validated, without importing either.
"""

from insr_hpc.pde.cases.params import AdvectionParams, ElasticityParams, EulerParams
from insr_hpc.registry import Registry

CASES: Registry = Registry("PDE case", "problem.case", capabilities=("packable", "term_kind"))
CASES.default = "advection"

CASES.declare("advection", "insr_hpc.pde.cases.advection:Advection", AdvectionParams, packable=True, term_kind="Term")
CASES.declare("elasticity", "insr_hpc.pde.cases.elasticity:Elasticity", ElasticityParams, term_kind="PotentialTerm")
CASES.declare("euler", "insr_hpc.pde.cases.euler:Euler", EulerParams, term_kind=None)

__all__ = ["CASES"]
