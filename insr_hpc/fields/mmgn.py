"""MMGN: multiplicative and modulated Gabor network (Luo et al. 2024).

Separation of variables: a spatial network of Gabor filters on ``x`` (N, in_dim), modulated
per time step by a latent code ``z_t`` (auto-decoder: the codes live in the trainer,
one per time step, initialised to zero and optimised with the weights):

    g_i(x) = sin(W_i x + b_i) · exp(−½ γ_i ‖x − μ_i‖²)          i = 0..L
    h_0 = g_0(x) ⊙ (B_0 z_t + c_0)
    h_i = (A_i h_(i−1) + B_i z_t + c_i) ⊙ g_i(x)                i = 1..L
    out = w · h_L + d

Filter initialisation follows multiplicative filter networks (Fathony et al. 2021):
γ ~ Gamma(α/(L+1), β) (α = 1 as in the authors' configuration), μ ~ U(−1, 1), W scaled by input_scale/√(L+1)·√γ so that
the product of L+1 filters spans frequencies up to about ``input_scale`` (rad per unit).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from insr_hpc.fields.params import MMGNParams
from insr_hpc.fields.registry import MODELS


class GaborFilter(nn.Module):
    def __init__(self, in_dim: int, width: int, weight_scale: float, alpha: float, beta: float, box: tuple[float, float]):
        super().__init__()
        self.linear = nn.Linear(in_dim, width)
        lo, hi = box
        self.mu = nn.Parameter(lo + (hi - lo) * torch.rand(width, in_dim))
        self.gamma = nn.Parameter(torch.distributions.Gamma(alpha, beta).sample((width,)))
        with torch.no_grad():
            self.linear.weight.mul_(weight_scale * torch.sqrt(self.gamma)[:, None])
            self.linear.bias.uniform_(-math.pi, math.pi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ‖x − μ‖² expanded so that no (N, width, in_dim) tensor is formed
        d2 = (x * x).sum(-1, keepdim=True) - 2 * x @ self.mu.T + (self.mu * self.mu).sum(-1)
        return torch.sin(self.linear(x)) * torch.exp(-0.5 * d2 * self.gamma)


@MODELS.register("mmgn")
class MMGN(nn.Module):
    Params = MMGNParams

    def __init__(self, params: "MMGN.Params", in_dim: int, out_dim: int):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.latent_dim = params.latent
        n = params.layers + 1
        scale = params.input_scale / math.sqrt(n)
        w = params.width
        # inputs are min-max normalised to [0, 1]; centres start in [−1, 1] as in MFN
        self.filters = nn.ModuleList(GaborFilter(in_dim, w, scale, params.alpha / n, params.beta, (-1.0, 1.0)) for _ in range(n))
        # no bias: the modulation's c_i plays that role
        self.hidden = nn.ModuleList(nn.Linear(w, w, bias=False) for _ in range(params.layers))
        bound = math.sqrt(1.0 / w)
        with torch.no_grad():
            for lin in self.hidden:
                lin.weight.uniform_(-bound, bound)
        # one projection for all B_i z + c_i: (latent) → (L+1)·width
        self.modulation = nn.Linear(params.latent, n * w)
        # c_i as in the authors' code: U(±1/√fan_in) of the layer's coordinate input, which
        # is the raw position (in_dim) for c_0 and the previous hidden layer (width) after
        # it. The codes start at zero, so c_0 alone sets the first layer's amplitude:
        # U(±1/√2) instead of nn.Linear's U(±1/√latent) starts the network ~8× less damped.
        with torch.no_grad():
            bias = self.modulation.bias.view(n, w)
            bias[0].uniform_(-1 / math.sqrt(in_dim), 1 / math.sqrt(in_dim))
            bias[1:].uniform_(-1 / math.sqrt(w), 1 / math.sqrt(w))
        self.out = nn.Linear(w, out_dim)

    @classmethod
    def build(cls, params: "MMGN.Params", in_dim: int, out_dim: int) -> "MMGN":
        return cls(params, in_dim, out_dim)

    def forward(self, x: torch.Tensor, codes: torch.Tensor | None = None, index: torch.Tensor | None = None,
                x_index: torch.Tensor | None = None) -> torch.Tensor:
        """x (P, in_dim) positions; codes (K, latent) with index (N,) ∈ [0, K) picking each
        point's code; x_index (N,) ∈ [0, P) picking each point's position (None: N = P, one
        point per row of x). The Gabor filters depend on position only, so a field on a
        fixed grid evaluates them once per distinct position. Returns (N, out_dim)."""
        if codes is None:
            raise ValueError("MMGN needs latent codes: model(x, codes=..., index=...)")
        mod = self.modulation(codes)  # (K, (L+1)·width), computed once per code, not per point
        if index is not None:
            mod = mod[index]
        mods = mod.chunk(len(self.filters), dim=-1)

        def gabor(i: int) -> torch.Tensor:
            g = self.filters[i](x)
            return g if x_index is None else g[x_index]

        h = gabor(0) * mods[0]
        for i, lin in enumerate(self.hidden, start=1):
            h = (lin(h) + mods[i]) * gabor(i)
        return self.out(h)

    def forward_steps(self, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """The same network on S time steps of P points each: x (P, in_dim) positions
        shared by every step (fixed sensors, the whole grid) or (S, P, in_dim); codes
        (S, latent), one per step. Returns (S, P, out_dim).

        Equal point counts let the modulation broadcast over a step's points instead of
        being gathered per point (and scattered back in the backward pass), and shared
        positions evaluate each filter once per position."""
        mods = self.modulation(codes).unsqueeze(1).chunk(len(self.filters), dim=-1)  # (S, 1, width) each
        h = self.filters[0](x) * mods[0]
        for i, lin in enumerate(self.hidden, start=1):
            h = (lin(h) + mods[i]) * self.filters[i](x)
        return self.out(h)
