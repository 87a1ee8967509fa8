"""Differential operators through autograd. Shapes: points ``x`` (N, d); scalar
fields (N, 1); vector fields (N, k). All keep the graph (``create_graph=True``) so
the results can sit inside a loss that is differentiated again."""

from __future__ import annotations

import torch


def gradient(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """∇y for a scalar field y (N, 1) → (N, d)."""
    (g,) = torch.autograd.grad(y, x, grad_outputs=torch.ones_like(y), create_graph=True)
    return g


def jacobian(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """∂y_i/∂x_j for a vector field y (N, k) → (N, k, d)."""
    rows = [gradient(y[:, i : i + 1], x) for i in range(y.shape[1])]
    return torch.stack(rows, dim=1)


def divergence(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """∇·v for v (N, d) → (N, 1)."""
    parts = [gradient(v[:, i : i + 1], x)[:, i : i + 1] for i in range(v.shape[1])]
    return torch.stack(parts, 0).sum(0)


def laplacian(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """∇²y for a scalar field y (N, 1) → (N, 1)."""
    return divergence(gradient(y, x), x)


# Per-point operators (forward mode; compose with vmap, jacrev and other torch.func
# transforms). ``f`` maps one point x (d,) to values (k,).


def grad_at(f, x: torch.Tensor) -> torch.Tensor:
    """∂f_i/∂x_j at one point: (k, d)."""
    return torch.func.jacfwd(f)(x)


def value_and_grad_at(f, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(f(x) (k,), ∂f/∂x (k, d)) with one forward-mode pass."""
    def both(y):
        value = f(y)
        return value, value

    jac, value = torch.func.jacfwd(both, has_aux=True)(x)
    return value, jac


def divergence_at(f, x: torch.Tensor) -> torch.Tensor:
    """∇·f at one point for f: (d,) → (d,); shape (1,)."""
    return torch.diagonal(grad_at(f, x)).sum()[None]


def laplacian_at(f, x: torch.Tensor) -> torch.Tensor:
    """∇²f at one point for a scalar field f: (d,) → (1,); shape (1,)."""
    hess = torch.func.jacfwd(lambda y: grad_at(f, y)[0])(x)
    return torch.diagonal(hess).sum()[None]
