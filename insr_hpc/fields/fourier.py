"""Fourier-feature networks (Tancik et al. 2020): an encoding γ(v) then a GELU MLP.

* ``ffn_p`` — positional encoding: per input dimension m = ``frequencies`` log-spaced
  frequencies σ^(j/m), j = 0..m−1, γ(v) = [cos(2π σ^(j/m) v_d), sin(…)] (2·m·in_dim features).
* ``ffn_g`` — Gaussian random features: B ~ N(0, σ²) of shape (features, in_dim), fixed,
  γ(v) = [cos(2π B v), sin(2π B v)].
Inputs (N, in_dim) are expected in [0, 1]; outputs (N, out_dim).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from insr_hpc.fields.params import FFNGaussianParams, FFNPositionalParams
from insr_hpc.fields.registry import MODELS


def gelu_mlp(n_in: int, width: int, depth: int, out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k in range(depth):
        layers += [nn.Linear(n_in if k == 0 else width, width), nn.GELU()]
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class FourierFeatureNet(nn.Module):
    def __init__(self, freqs: torch.Tensor, width: int, depth: int, out_dim: int):
        super().__init__()
        self.in_dim, self.out_dim = freqs.shape[1], out_dim
        self.register_buffer("freqs", freqs)  # (features, in_dim), cycles per unit; fixed, not trained
        self.mlp = gelu_mlp(2 * freqs.shape[0], width, depth, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proj = 2 * math.pi * x @ self.freqs.T
        return self.mlp(torch.cat([torch.cos(proj), torch.sin(proj)], dim=-1))


@MODELS.register("ffn_p")
class FFNPositional:
    Params = FFNPositionalParams

    @staticmethod
    def build(params: "FFNPositional.Params", in_dim: int, out_dim: int) -> FourierFeatureNet:
        m = params.frequencies
        scales = params.sigma ** (torch.arange(m) / m)
        freqs = torch.zeros(m * in_dim, in_dim)
        for d in range(in_dim):  # axis-aligned: each feature sees one coordinate
            freqs[d * m : (d + 1) * m, d] = scales
        return FourierFeatureNet(freqs, params.width, params.depth, out_dim)


@MODELS.register("ffn_g")
class FFNGaussian:
    Params = FFNGaussianParams

    @staticmethod
    def build(params: "FFNGaussian.Params", in_dim: int, out_dim: int) -> FourierFeatureNet:
        # drawn from torch's global RNG, which the trainer seeds before building
        freqs = torch.randn(params.features, in_dim) * params.sigma
        return FourierFeatureNet(freqs, params.width, params.depth, out_dim)
