"""L-BFGS with a strong-Wolfe line search (torch.optim.LBFGS) on a fixed batch per
time step: a quasi-Newton method for any objective (residuals or energies).

A result is ``capped`` when torch's loop ended on its budget (``max_iters`` iterations
or ``max_eval`` objective evaluations) rather than on a tolerance; torch checks the
budget first at each iteration, so an iteration that exhausts the budget counts as
capped even if a tolerance would also have stopped it there (the cautious side)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from insr_hpc.config.schema import require
from insr_hpc.pde.optimizers.base import OPTIMIZERS, MinimizeResult, Optimizer
from insr_hpc.pde.terms import draw, module_point_fn, objective


@OPTIMIZERS.register("lbfgs")
class LBFGS(Optimizer):
    @dataclass
    class Params:
        name: str = "lbfgs"
        lr: float = 1.0
        max_iters: int = 200  # L-BFGS iterations per time step
        init_max_iters: int = 2000  # step 0: L-BFGS iterations fitting the initial condition
        history: int = 50  # curvature pairs kept
        tol: float = 1e-9  # stop when the gradient's largest entry is below this
        rtol: float = 1e-12  # stop when the objective or step changes by less than this
        init_rtol: float = 1e-12  # rtol of step 0

        def validate(self) -> None:
            require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
            require(self.max_iters >= 1, "max_iters", f"must be >= 1, got {self.max_iters}")
            require(self.init_max_iters >= 1, "init_max_iters", f"must be >= 1, got {self.init_max_iters}")
            require(self.history >= 1, "history", f"must be >= 1, got {self.history}")
            require(self.tol >= 0, "tol", f"must be >= 0, got {self.tol}")
            require(self.rtol >= 0, "rtol", f"must be >= 0, got {self.rtol}")
            require(self.init_rtol >= 0, "init_rtol", f"must be >= 0, got {self.init_rtol}")

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
