"""Adam on each sub-problem's objective (a fresh mini-batch every iteration).

Convergence rule (README): stop at ``max_iters``; or once a batch loss falls below
``tol``; or after ``patience`` consecutive windows of ``window`` iterations whose mean
loss did not beat the best window so far by more than ``rtol`` (relative); or, with a
learning-rate schedule (``plateau`` > 0: ×``plateau_factor`` after ``plateau``
iterations without improvement, torch's ReduceLROnPlateau), once the rate falls
below ``min_lr``. The INSR authors' recipe is lr 1e-4, plateau 500, factor 0.1,
min_lr 1e-8, at most 20 000 iterations and no window rule (rtol 0).

A result is ``capped`` when the loop ran all ``max_iters`` iterations without any of
these rules firing (at the last iteration included).

``keep_best``: the iterate with the lowest batch loss is remembered, and at the end
it and the last iterate are compared on one fresh evaluation batch; the better one is
returned, so an optimisation that ends inside an Adam spike does not keep the spike.
"""

from __future__ import annotations


import torch

from insr_hpc.pde.optimizers.base import OPTIMIZERS, MinimizeResult, Optimizer
from insr_hpc.pde.optimizers.params import AdamParams
from insr_hpc.pde.terms import draw, module_point_fn, objective


@OPTIMIZERS.register("adam")
class Adam(Optimizer):
    Params = AdamParams

    def minimize(self, module, problem, gen, *, initial, reducer):
        p = self.params
        lr, max_iters, rtol = (p.init_lr, p.init_max_iters, p.init_rtol) if initial else (p.lr, p.max_iters, p.rtol)
        params = [q for q in module.parameters() if q.requires_grad]
        field = module_point_fn(module)

        def batch_loss(batches):
            return objective(problem.terms, field, batches)

        return adam_loop(
            params, batch_loss, lambda: draw(problem.terms, gen), gen, lr=lr, max_iters=max_iters, tol=p.tol,
            rtol=rtol, window=p.window, patience=p.patience, grad_clip=p.grad_clip, plateau=p.plateau,
            plateau_factor=p.plateau_factor, min_lr=p.min_lr, keep_best=p.keep_best, reducer=reducer,
            on_iteration=self.on_iteration,
        )


def adam_loop(params, batch_loss, draw_batches, gen, *, lr, max_iters, tol, rtol, window, patience=1, grad_clip=0.0,
              plateau=0, plateau_factor=0.1, min_lr=0.0, keep_best=False, reducer=None, on_iteration=None,
              report_offset=0, report_of=None) -> MinimizeResult:
    """Adam from the parameters' current values (warm start); see the module docstring.

    ``batch_loss(batches)`` → scalar tensor; ``draw_batches()`` → a fresh mini-batch.
    ``reducer`` averages gradients and losses across data-parallel ranks, so every rank
    takes the same decisions. ``on_iteration(report_offset + it, report_of or max_iters)``
    after each iteration (the offset and total: when this loop is a part of a longer one)."""
    params = list(params)
    opt = torch.optim.Adam(params, lr=lr)
    sched = (
        torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=plateau_factor, patience=plateau, eps=0.0)
        if plateau > 0
        else None
    )
    reduce_grads = reducer.reduce_grads if reducer is not None else None
    mean_scalar = reducer.mean_scalar if reducer is not None else None
    losses: list[float] = []
    best_window, stale = float("inf"), 0
    best_loss, best_params = float("inf"), None
    capped = True  # until a stopping rule fires: the loop ran out at max_iters
    for it in range(1, max_iters + 1):
        opt.zero_grad(set_to_none=True)
        loss = batch_loss(draw_batches())
        value = float(loss.detach())
        if mean_scalar is not None:
            value = mean_scalar(value)
        if keep_best and value < best_loss:  # the loss of the parameters *before* this update
            best_loss, best_params = value, [q.detach().clone() for q in params]
        loss.backward()
        if reduce_grads is not None:
            reduce_grads(params)
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        losses.append(value)
        if on_iteration is not None:
            on_iteration(report_offset + it, report_of or max_iters)
        if 0 <= value < tol:  # residual losses; an energy (may be < 0) stops by the other rules
            capped = False
            break
        if sched is not None:
            sched.step(value)
            if opt.param_groups[0]["lr"] < min_lr:
                capped = False
                break
        if rtol > 0 and it % window == 0:
            cur = sum(losses[-window:]) / window
            if best_window == float("inf") or cur < best_window - rtol * abs(best_window):  # abs: energies < 0
                best_window, stale = cur, 0
            else:
                stale += 1
                if stale >= patience:
                    capped = False
                    break
    final = losses[-1]
    if keep_best and best_params is not None:
        final = _pick_best(params, best_params, batch_loss, draw_batches, mean_scalar)
    return MinimizeResult(len(losses), final, losses, capped=capped)


def _pick_best(params, best_params, batch_loss, draw_batches, mean_scalar) -> float:
    """Compare the last and the best-so-far iterate on one fresh batch; keep the better."""
    batches = draw_batches()

    def evaluate() -> float:
        with torch.no_grad():
            value = float(batch_loss(batches))
        return mean_scalar(value) if mean_scalar is not None else value

    last_params = [q.detach().clone() for q in params]
    last = evaluate()
    with torch.no_grad():
        for q, b in zip(params, best_params, strict=True):
            q.copy_(b)
    best = evaluate()
    if best <= last:
        return best
    with torch.no_grad():
        for q, b in zip(params, last_params, strict=True):
            q.copy_(b)
    return last
