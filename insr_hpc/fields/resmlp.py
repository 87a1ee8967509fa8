"""ResMLP: a ReLU MLP with identity skip connections, x_{k+1} = x_k + gelu(W_k x_k + b_k).

Inputs (N, in_dim) → lift to ``width`` → ``depth`` residual layers → (N, out_dim).
"""

from __future__ import annotations


import torch
from torch import nn

from insr_hpc.fields.params import ResMLPParams
from insr_hpc.fields.registry import MODELS


@MODELS.register("resmlp")
class ResMLP(nn.Module):
    Params = ResMLPParams

    def __init__(self, params: "ResMLP.Params", in_dim: int, out_dim: int):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.lift = nn.Linear(in_dim, params.width)
        self.blocks = nn.ModuleList(nn.Linear(params.width, params.width) for _ in range(params.depth))
        self.out = nn.Linear(params.width, out_dim)

    @classmethod
    def build(cls, params: "ResMLP.Params", in_dim: int, out_dim: int) -> "ResMLP":
        return cls(params, in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lift(x)
        for lin in self.blocks:
            h = h + torch.nn.functional.gelu(lin(h))
        return self.out(h)
