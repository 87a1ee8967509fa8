"""Minimise one sub-problem's loss with Adam, under the documented convergence rule."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch


@dataclass
class MinimizeResult:
    iterations: int
    final_loss: float  # mean loss of the last window (less noisy than the last batch)
    losses: list[float] = field(default_factory=list)  # every iteration's loss


def minimize(
    params: Iterable[torch.nn.Parameter],
    loss_fn: Callable[[torch.Generator], torch.Tensor],
    gen: torch.Generator,
    *,
    lr: float,
    max_iters: int,
    tol: float,
    rtol: float,
    window: int,
    patience: int = 1,
    grad_clip: float = 0.0,
    reduce_grads: Callable[[list[torch.nn.Parameter]], None] | None = None,
    reduce_loss: Callable[[float], float] | None = None,
) -> MinimizeResult:
    """Adam from the parameters' current values (warm start).

    Stops at ``max_iters``; or when a batch loss falls below ``tol``; or after
    ``patience`` consecutive windows of ``window`` iterations whose mean loss did not
    beat the best window so far by more than ``rtol`` (relative). Comparing with the
    best window, not the last one, keeps a single Adam spike from ending a step early. ``reduce_grads``/``reduce_loss`` average across data-
    parallel ranks so every rank takes the same decision.
    """
    params = list(params)
    opt = torch.optim.Adam(params, lr=lr)
    losses: list[float] = []
    best = float("inf")
    stale = 0
    for it in range(1, max_iters + 1):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(gen)
        loss.backward()
        if reduce_grads is not None:
            reduce_grads(params)
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        value = float(loss.detach())
        if reduce_loss is not None:
            value = reduce_loss(value)
        losses.append(value)
        if 0 <= value < tol:  # residual losses; an energy (may be < 0) stops by the window rule
            break
        if it % window == 0:
            cur = sum(losses[-window:]) / window
            if best == float("inf") or cur < best - rtol * abs(best):  # abs: energies may be < 0
                best, stale = cur, 0
            else:
                stale += 1
                if stale >= patience:
                    break
    n = min(window, len(losses))
    return MinimizeResult(len(losses), sum(losses[-n:]) / n, losses)
