"""Each integrator's residual vanishes exactly at its own discrete update and not at
another's. Known answer: advection u_t = −a u_x of uⁿ = sin(kx); with c = Δt·a·k,
  explicit Euler  u⁺ = sin − c cos
  implicit Euler  u⁺ = (sin − c cos) / (1 + c²)
  midpoint        u⁺ = ((1 − c²/4) sin − c cos) / (1 + c²/4)   (|amplitude| = 1)
"""

import math

import pytest
import torch

from insr_hpc.ops import grad_at
from insr_hpc.pde.integrators import INTEGRATORS, Term

A, K, DT = 0.7, 3.0, 0.2
C = DT * A * K


def field(a_sin: float, b_cos: float):
    return lambda x: a_sin * torch.sin(K * x) + b_cos * torch.cos(K * x)


EXACT = {
    "explicit_euler": (1.0, -C),
    "implicit_euler": (1 / (1 + C**2), -C / (1 + C**2)),
    "midpoint": ((1 - C**2 / 4) / (1 + C**2 / 4), -C / (1 + C**2 / 4)),
}


def residual_rms(name, new_coeffs):
    term = Term(rhs=lambda f, x: -A * grad_at(f, x)[:, 0])
    integ = INTEGRATORS.get(name)(None)
    x = torch.linspace(-3, 3, 257, dtype=torch.float64)[:, None]
    return integ.objective(term, field(*new_coeffs), [field(1.0, 0.0)], x, DT).sqrt().item()


@pytest.mark.parametrize("name", sorted(EXACT))
def test_residual_is_zero_at_the_schemes_own_update(name):
    assert residual_rms(name, EXACT[name]) < 1e-12
    for other in EXACT:
        if other != name:
            assert residual_rms(name, EXACT[other]) > 1e-3


def test_midpoint_preserves_amplitude_and_euler_schemes_do_not():
    amp = {k: math.hypot(*v) for k, v in EXACT.items()}
    assert amp["midpoint"] == pytest.approx(1.0, abs=1e-12)
    assert amp["explicit_euler"] > 1 + C**2 / 3  # grows: unstable for pure advection
    assert amp["implicit_euler"] < 1 - C**2 / 3  # decays: numerical diffusion


def test_unknown_integrator_lists_known_names():
    from insr_hpc.errors import ConfigError

    with pytest.raises(ConfigError, match="known: explicit_euler, implicit_euler, midpoint"):
        INTEGRATORS.get("rk45")
