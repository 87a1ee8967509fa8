"""The config sections of the time integrators (``integrator``, typed by
``integrator.name``). Torch-free: a config is validated without importing them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ExplicitEulerParams:
    name: str = "explicit_euler"


@dataclass
class ImplicitEulerParams:
    name: str = "implicit_euler"


@dataclass
class MidpointParams:
    name: str = "midpoint"


@dataclass
class VariationalEulerParams:
    name: str = "variational"
