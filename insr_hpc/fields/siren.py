"""SIREN (Sitzmann et al. 2020): sine-activated MLP with its principled initialisation.

Layer k computes ``sin(ω · (W x + b))``. The first layer draws W from U(−1/n_in, 1/n_in)
(ω = ``omega0``); hidden and output layers from U(−√(6/n_in)/ω_h, √(6/n_in)/ω_h) with
ω_h = ``omega0_hidden``, which keeps every hidden pre-activation ~N(0, 1)-ish and every
activation arcsine-distributed on [−1, 1] (variance 1/2) at any depth.

:meth:`Siren.value_and_jacobian` returns the outputs and their Jacobian in the input
coordinates for a batch by propagating the d tangents through the layers alongside the
values (forward mode by hand: ∂h/∂x = ω cos(z) ⊙ W ∂h_prev/∂x), with sin and cos of
each pre-activation computed once and reused by the backward pass. A loss of that
Jacobian (a deformation gradient, a strain energy) is then differentiated in the
weights by one ordinary backward pass instead of a backward through a double backward.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from insr_hpc.fields.params import SirenParams
from insr_hpc.fields.registry import MODELS


class _SinCos(torch.autograd.Function):
    """(sin z, cos z), both saved for the backward pass, which is written in
    differentiable ops (double backward works) and needs no further sin or cos."""

    generate_vmap_rule = True

    @staticmethod
    def forward(z):
        return torch.sin(z), torch.cos(z)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*output)
        ctx.save_for_forward(*output)

    @staticmethod
    def backward(ctx, grad_sin, grad_cos):
        sin, cos = ctx.saved_tensors
        return grad_sin * cos - grad_cos * sin

    @staticmethod
    def jvp(ctx, z_dot):
        sin, cos = ctx.saved_tensors
        return cos * z_dot, -sin * z_dot


def sincos(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return _SinCos.apply(z)


class SineLayer(nn.Module):
    def __init__(self, n_in: int, n_out: int, omega: float, first: bool):
        super().__init__()
        self.omega = omega
        self.linear = nn.Linear(n_in, n_out)
        bound = 1.0 / n_in if first else math.sqrt(6.0 / n_in) / omega
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.omega * self.linear(x))


@MODELS.register("siren")
class Siren(nn.Module):
    Params = SirenParams

    def __init__(self, params: "Siren.Params", in_dim: int, out_dim: int):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.output_scale = params.output_scale
        layers: list[nn.Module] = [SineLayer(in_dim, params.width, params.omega0, first=True)]
        for _ in range(params.depth - 1):
            layers.append(SineLayer(params.width, params.width, params.omega0_hidden, first=False))
        self.hidden = nn.Sequential(*layers)
        self.out = nn.Linear(params.width, out_dim)
        bound = math.sqrt(6.0 / params.width) / params.omega0_hidden
        with torch.no_grad():
            self.out.weight.uniform_(-bound, bound)

    @classmethod
    def build(cls, params: "Siren.Params", in_dim: int, out_dim: int) -> "Siren":
        return cls(params, in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(x)) * self.output_scale

    def value_and_jacobian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(f(x) (…, k), ∂f_i/∂x_j (…, k, d)) for x (…, d), tangents propagated forward."""
        lead, d = x.shape[:-1], x.shape[-1]
        h = x.reshape(-1, d)
        tangents = None  # (d, N, width): ∂h/∂x_j for each input coordinate j
        for layer in self.hidden:
            weight, bias, omega = layer.linear.weight, layer.linear.bias, layer.omega
            sin, cos = sincos(omega * torch.nn.functional.linear(h, weight, bias))
            dz = weight.T[:, None, :] if tangents is None else tangents @ weight.T  # ∂(Wh + b)/∂x_j
            tangents = (omega * cos) * dz
            h = sin
        y = self.out(h) * self.output_scale
        jac = (tangents @ self.out.weight.T) * self.output_scale  # (d, N, k)
        return y.reshape(*lead, -1), jac.permute(1, 2, 0).reshape(*lead, y.shape[-1], d)
