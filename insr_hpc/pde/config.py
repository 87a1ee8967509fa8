"""The PDE workload's config: the shared schema (``config/schema.py``) whose tagged
sections take the dataclass their registry entry declares, plus the checks that span
sections. Torch-free: a PDE config is validated without importing any case,
integrator, optimiser or model (each registry answers from its declarations)."""

from __future__ import annotations

from dataclasses import dataclass

from insr_hpc.config.schema import Config
from insr_hpc.errors import ConfigError
from insr_hpc.fields.registry import MODELS
from insr_hpc.pde.cases import CASES
from insr_hpc.pde.integrators import INTEGRATORS
from insr_hpc.pde.optimizers import OPTIMIZERS

# section → (the key that selects its dataclass, the registry of those dataclasses)
TAGGED_SECTIONS = {
    "problem": ("case", CASES),
    "network": ("model", MODELS),
    "integrator": ("name", INTEGRATORS),
    "optim": ("name", OPTIMIZERS),
}


def term_kind(case: str) -> str | None:
    """The name of the term class case ``case`` hands its integrator (None: the case
    integrates in time itself): declared (capability ``term_kind``), else the
    registered class's ``term_kind``."""
    caps = CASES.capabilities(case)
    if "term_kind" in caps:
        return caps["term_kind"]
    kind = CASES.get(case).term_kind
    return None if kind is None else kind.__name__


def accepts(integrator: str) -> str:
    """The name of the term class integrator ``integrator`` accepts: declared
    (capability ``accepts``), else the registered class's ``accepts``."""
    caps = INTEGRATORS.capabilities(integrator)
    if "accepts" in caps:
        return caps["accepts"]
    return INTEGRATORS.get(integrator).accepts.__name__


@dataclass
class PDEConfig(Config):
    """The PDE config, plus the checks that span sections."""

    def validate(self) -> None:
        super().validate()
        kind, accepted = term_kind(self.problem.case), accepts(self.integrator.name)
        if kind is not None and kind != accepted:
            need = [n for n in INTEGRATORS.names() if accepts(n) == kind]
            raise ConfigError(
                "integrator.name",
                f"'{self.integrator.name}' cannot integrate case '{self.problem.case}' "
                f"({kind}); use {' or '.join(need)}",
            )
