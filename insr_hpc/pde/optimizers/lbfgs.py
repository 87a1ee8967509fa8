"""L-BFGS with a strong-Wolfe line search (torch.optim.LBFGS) on a fixed batch per
time step: a quasi-Newton method for any objective (residuals or energies).

A result is ``capped`` when torch's loop ended on its budget (``max_iters`` iterations
or ``max_eval`` objective evaluations) rather than on a tolerance; torch checks the
budget first at each iteration, so an iteration that exhausts the budget counts as
capped even if a tolerance would also have stopped it there (the cautious side)."""

from __future__ import annotations


import torch

from insr_hpc.pde.optimizers.base import OPTIMIZERS, MinimizeResult, Optimizer
from insr_hpc.pde.optimizers.params import LBFGSParams
from insr_hpc.pde.terms import draw, module_point_fn, objective


@OPTIMIZERS.register("lbfgs")
class LBFGS(Optimizer):
    Params = LBFGSParams

    def minimize(self, module, problem, gen, *, initial, reducer):
        p = self.params
        max_iters, rtol = (p.init_max_iters, p.init_rtol) if initial else (p.max_iters, p.rtol)
        params = [q for q in module.parameters() if q.requires_grad]
        field = module_point_fn(module)
        batches = draw(problem.terms, gen)
        opt = torch.optim.LBFGS(
            params, lr=p.lr, max_iter=max_iters, max_eval=int(max_iters * 1.25) + 1, history_size=p.history,
            tolerance_grad=p.tol, tolerance_change=rtol, line_search_fn="strong_wolfe",
        )
        losses: list[float] = []
        report = self.on_iteration

        def closure():
            opt.zero_grad(set_to_none=True)
            loss = objective(problem.terms, field, batches)
            loss.backward()
            if reducer.reduce_grads is not None:
                reducer.reduce_grads(params)
            value = float(loss.detach())
            if reducer.mean_scalar is not None:
                value = reducer.mean_scalar(value)
            losses.append(value)
            if report is not None:  # torch counts n_iter before it evaluates the iteration's objective
                report(max(0, int(opt.state[params[0]].get("n_iter", 1)) - 1), max_iters)
            return torch.tensor(value, dtype=loss.dtype)

        max_eval = opt.param_groups[0]["max_eval"]
        opt.step(closure)
        state = opt.state[params[0]]
        iterations = int(state.get("n_iter", len(losses)))
        capped = iterations >= max_iters or int(state.get("func_evals", len(losses))) >= max_eval
        with torch.no_grad():
            final = float(objective(problem.terms, field, batches))
        if reducer.mean_scalar is not None:
            final = reducer.mean_scalar(final)
        return MinimizeResult(iterations, final, losses, capped=capped)
