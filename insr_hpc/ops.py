"""Differential operators through autograd. Shapes: points ``x`` (N, d); scalar
fields (N, 1); vector fields (N, k). All keep the graph (``create_graph=True``) so
the results can sit inside a loss that is differentiated again."""

from __future__ import annotations

import contextlib
import contextvars

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


# Point operators. A term is written for one point x (d,) and a field f: (d,) → (k,);
# the same code runs on a batch x (N, d) with a batched field when the caller is in
# ``batch_mode()`` (Adam, L-BFGS, objective evaluations: reverse-mode autograd, the
# fastest on CPU), and per point under ``torch.func.vmap`` otherwise (Gauss–Newton's
# per-sample Jacobians: torch.func transforms, which compose with jacrev and vmap). Results
# keep leading batch dimensions: index them with ``...`` (``grad_at(f, x)[..., 0, :]``).

_BATCH = contextvars.ContextVar("insr_batch_mode", default=False)
_FORWARD = contextvars.ContextVar("insr_forward_jacobians", default=True)


@contextlib.contextmanager
def batch_mode():
    """Inside: point operators take batches (N, d) and use autograd."""
    token = _BATCH.set(True)
    try:
        yield
    finally:
        _BATCH.reset(token)


def _batched_value_and_jacobian(f, x: torch.Tensor):
    keep = torch.is_grad_enabled()  # under no_grad: values only, no graph to the weights
    with torch.enable_grad():
        leaf = x.detach().requires_grad_(True)
        y = f(leaf)
        rows = [
            torch.autograd.grad(y[..., i].sum(), leaf, create_graph=keep, retain_graph=True)[0]
            for i in range(y.shape[-1])
        ]
    jac = torch.stack(rows, dim=-2)
    return (y, jac) if keep else (y.detach(), jac.detach())


@contextlib.contextmanager
def reverse_jacobians():
    """Inside: batched spatial derivatives by reverse mode even where a field has a
    forward-mode Jacobian (the previous code path: benchmarks and tests compare both)."""
    token = _FORWARD.set(False)
    try:
        yield
    finally:
        _FORWARD.reset(token)


def with_jacobian(f, value_and_jacobian):
    """Mark the point field ``f`` as having a batched forward-mode Jacobian:
    ``value_and_jacobian(x)`` → (f(x) (N, k), ∂f/∂x (N, k, d)) for x (N, d), used by
    :func:`value_and_grad_at` in ``batch_mode`` instead of one backward pass per output
    component (whose weight gradient is then a backward through a backward). Returns f."""
    f.value_and_jacobian = value_and_jacobian
    return f


def value_and_grad_at(f, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(f(x) (…, k), ∂f_i/∂x_j (…, k, d)) from one evaluation of f."""
    if _BATCH.get():
        forward = getattr(f, "value_and_jacobian", None) if _FORWARD.get() else None
        if forward is not None:
            return forward(x)
        return _batched_value_and_jacobian(f, x)

    def both(y):
        value = f(y)
        return value, value

    # reverse mode in x: under Gauss–Newton's vmap(jacrev(·)) this measured ~1.6× faster
    # than forward mode (reverse-over-reverse beats reverse-over-forward in PyTorch here)
    jac, value = torch.func.jacrev(both, has_aux=True)(x)
    return value, jac


def grad_at(f, x: torch.Tensor) -> torch.Tensor:
    """∂f_i/∂x_j: (…, k, d)."""
    return value_and_grad_at(f, x)[1]


def divergence_at(f, x: torch.Tensor) -> torch.Tensor:
    """∇·f for f: (d,) → (d,); shape (…, 1)."""
    return torch.diagonal(grad_at(f, x), dim1=-2, dim2=-1).sum(-1, keepdim=True)


def laplacian_at(f, x: torch.Tensor) -> torch.Tensor:
    """∇²f for a scalar field f: (d,) → (1,); shape (…, 1)."""
    if _BATCH.get():
        keep = torch.is_grad_enabled()
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(f(leaf).sum(), leaf, create_graph=True)
            lap = sum(
                torch.autograd.grad(g[..., j].sum(), leaf, create_graph=keep, retain_graph=True)[0][..., j]
                for j in range(x.shape[-1])
            )
        lap = lap[..., None]
        return lap if keep else lap.detach()
    hess = torch.func.jacfwd(lambda y: grad_at(f, y)[0])(x)
    return torch.diagonal(hess).sum()[None]
