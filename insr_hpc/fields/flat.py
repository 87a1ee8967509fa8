"""A network's parameters as one flat vector, and the layout to undo it."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def param_layout(model: nn.Module) -> list[dict]:
    """``[{"name", "shape", "offset", "size"}, …]`` in ``named_parameters`` order."""
    layout, offset = [], 0
    for name, p in model.named_parameters():
        layout.append({"name": name, "shape": list(p.shape), "offset": offset, "size": p.numel()})
        offset += p.numel()
    return layout


def flatten_params(model: nn.Module) -> np.ndarray:
    """All parameters, float32, concatenated in layout order."""
    return torch.nn.utils.parameters_to_vector(model.parameters()).detach().cpu().numpy().astype(np.float32)


def load_flat_params(model: nn.Module, flat: np.ndarray) -> nn.Module:
    """Copy a flat vector (from :func:`flatten_params` or a store) into ``model``."""
    n = sum(p.numel() for p in model.parameters())
    if flat.shape != (n,):
        raise ValueError(f"flat parameter vector has shape {flat.shape}, model needs ({n},)")
    ref = next(model.parameters())
    vec = torch.as_tensor(np.asarray(flat), dtype=ref.dtype, device=ref.device)
    # copy_ into each parameter's own storage (vector_to_parameters would make them views
    # of one buffer, whose different alignment can change GEMM rounding: no bitwise resume)
    offset = 0
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(vec[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
    return model
