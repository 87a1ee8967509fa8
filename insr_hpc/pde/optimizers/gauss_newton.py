"""Second-order steps: Levenberg–Marquardt on least-squares sub-problems, damped
Newton–CG on energies.

Least squares (every INSR advection and Euler sub-step, every initial fit): with the
scaled residual vector r(θ) (M,) of :func:`insr_hpc.pde.terms.residual_rows` and its
Jacobian J = ∂r/∂θ (M, P), taken per sample as ``vmap(jacrev(·))`` (cost ∝ M·P, the
size of J), each iteration solves

    (JᵀJ + λ·diag(JᵀJ)) δ = −Jᵀr

in float64 (dense Cholesky up to ``max_dense`` parameters; beyond, conjugate gradients
on J itself without forming JᵀJ), accepts θ + δ if it lowers ‖r‖² on the same samples (λ ÷ 3) and
otherwise raises λ (× 4) and solves again. Data-parallel ranks each hold a slice of
the rows; JᵀJ, Jᵀr and ‖r‖² are summed across ranks, so every rank takes the same step.
On CPU, JᵀJ is one triangle by BLAS ``ssyrk`` and the damped system is factored by
LAPACK on it (:class:`NormalEquations`): forming JᵀJ is the dominant cost.

``damping_floor``: D = diag(JᵀJ) floored at that fraction of its mean. Without a floor,
a direction the residual barely sees (the hidden weights of a network whose output
layer is near zero, e.g. a pressure fitted to ∇p ≈ 0) has D ≈ 0 and Marquardt's scaled
step along it is unbounded: every trial is refused and the sub-problem never moves —
what made Gauss–Newton fail on Euler's pressure solve.

Energies (the variational elasticity step): Newton on E(θ), CG on (H + λI) δ = −∇E and a
backtracking (Armijo) line search on the iteration's samples. When every term splits
its density as outer(y(θ, x), x) with a few local quantities y (``Energy.inner`` /
``outer``: φ and ∇φ), H is the generalised Gauss–Newton matrix G = Jᵀ ∇²outer J
(∇²outer per sample, m × m, projected on its non-negative eigenvalues), positive
semi-definite whatever the network's own curvature, and every product costs two
batched backward passes (J v by the double-vjp trick, Jᵀ u) on ``hessian_samples`` of
the batch (``ggn_newton``). Otherwise the exact Hessian, per point (forward-over-reverse,
CG truncated at negative curvature; ``newton_cg``). An energy is a Monte-Carlo
integral: on one fixed batch a converged Newton overfits the sample set, so with
``resample: iteration`` each iteration draws fresh samples, and ``average`` final
iterations (fresh samples each) are averaged, which averages their sampling noise.

Stopping: ``max_iters`` (``init_max_iters`` at step 0), the objective below ``tol``, an
accepted iteration that improved it by less than ``rtol`` (relative), or (least squares,
steps ≥ 1) the objective at most ``reduction`` × its warm-start value. A sub-problem that
ends at its cap says so (``MinimizeResult.capped``; the store's ``capped``).
"""

from __future__ import annotations


import numpy as np
import torch
from torch.func import jacrev, jvp, vmap

from insr_hpc.pde.optimizers.adam import adam_loop
from insr_hpc.pde.optimizers.base import OPTIMIZERS, MinimizeResult, Optimizer, ParamVector, Reducer
from insr_hpc.pde.optimizers.params import GaussNewtonParams
from insr_hpc.ops import batch_mode
from insr_hpc.pde.terms import (
    Energy,
    Residual,
    batch_size,
    draw,
    energy_value,
    module_point_fn,
    objective,
    residual_rows,
)



@OPTIMIZERS.register("gauss_newton")
class GaussNewton(Optimizer):
    Params = GaussNewtonParams

    def minimize(self, module, problem, gen, *, initial, reducer):
        p = self.params
        max_iters, rtol = (p.init_max_iters, p.init_rtol) if initial else (p.max_iters, p.rtol)
        vec = ParamVector(module)
        warm = 0
        hook = self.on_iteration
        most = max_iters + (p.init_warmup if initial else 0)
        if initial and p.init_warmup:
            # From a random network a few hundred Adam steps find the basin that
            # Levenberg–Marquardt then converges in quickly (LM alone crawls there).
            field = module_point_fn(module)
            adam_loop(
                [q for q in module.parameters() if q.requires_grad],
                lambda b: objective(problem.terms, field, b),
                lambda: draw(problem.terms, gen),
                gen, lr=p.init_warmup_lr, max_iters=p.init_warmup, tol=0.0, rtol=0.0, window=1, reducer=reducer,
                on_iteration=hook, report_of=most,
            )
            warm = p.init_warmup
        report = None if hook is None else (lambda done: hook(warm + done, most))
        if problem.least_squares:
            res = levenberg_marquardt(vec, problem.terms, gen, max_iters=max_iters, rtol=rtol, params=p, reducer=reducer,
                                      reduction=0.0 if initial else p.reduction, report=report)
        elif p.energy_curvature == "ggn" and has_energy_split(problem.terms):
            res = ggn_newton(module, problem.terms, gen, max_iters=max_iters, rtol=rtol, params=p, reducer=reducer,
                             report=report)
        else:
            res = newton_cg(vec, problem.terms, gen, max_iters=max_iters, rtol=rtol, params=p, reducer=reducer,
                            report=report)
        res.iterations += warm
        return res


# least squares ---------------------------------------------------------------------


def residual_jacobian(vec: ParamVector, terms, theta, batches, world_size: int, chunk: int):
    """Scaled residual rows r (M,) and their Jacobian J (M, P), per sample by reverse mode."""
    rows, jacs = [], []
    for term, batch in zip(terms, batches, strict=True):
        assert isinstance(term, Residual)
        n = batch_size(batch) * world_size
        scale = (term.weight / n) ** 0.5

        def one(th, *sample, term=term):
            s = sample if len(sample) > 1 else sample[0]
            r = term.fn(vec.point_fn(th), s).reshape(-1)
            return r, r

        args = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
        in_dims = (None, *([0] * len(args)))
        J, r = vmap(jacrev(one, has_aux=True), in_dims=in_dims, chunk_size=chunk)(theta, *args)
        rows.append(r.reshape(-1) * scale)
        jacs.append(J.reshape(-1, theta.numel()) * scale)
    return torch.cat(rows), torch.cat(jacs)


def _cg(matvec, b: torch.Tensor, iters: int, rel_tol: float = 1e-8) -> torch.Tensor:
    """Conjugate gradients for SPD ``matvec``; stops early at negative curvature."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = r @ r
    b_norm = rs.sqrt()
    for _ in range(iters):
        Ap = matvec(p)
        curv = p @ Ap
        if curv <= 0:
            return x if x.abs().sum() > 0 else b  # fall back to the (preconditioned) gradient step
        alpha = rs / curv
        x = x + alpha * p
        r = r - alpha * Ap
        rs_new = r @ r
        if rs_new.sqrt() <= rel_tol * b_norm:
            break
        p = r + (rs_new / rs) * p
        rs = rs_new
    return x


class NormalEquations:
    """Damped Gauss–Newton systems (JᵀJ + λD) δ = −g for one Jacobian, factored per λ.

    On CPU with a float32 Jacobian, JᵀJ is one triangle by BLAS ``ssyrk`` (half the flops
    of ``J.T @ J``: it is the dominant cost of an iteration) and each damped system is
    Cholesky-factored in float64 by LAPACK on that triangle (scipy), under torch's
    thread count; elsewhere (CUDA, a float64 Gram) by torch. ``reduce`` sums the Gram
    over data-parallel ranks."""

    def __init__(self, J: torch.Tensor, reduce, float64: bool):
        self.cpu = J.device.type == "cpu" and not float64 and J.dtype == torch.float32
        self.device = J.device
        if self.cpu:
            from scipy.linalg import blas

            with _blas_threads():
                upper = blas.ssyrk(1.0, J.detach().contiguous().numpy().T, trans=0, lower=0)  # (P, P): its upper triangle
            self.A = reduce(torch.from_numpy(upper.astype(np.float64))).numpy()  # (summed over ranks elementwise)
            self.diag = torch.from_numpy(np.diagonal(self.A).copy())
        else:
            Jg = J.double() if float64 else J
            self.A = reduce((Jg.T @ Jg).double())
            self.diag = torch.diagonal(self.A).clone()

    def solve(self, g: torch.Tensor, lam: float, D: torch.Tensor) -> torch.Tensor:
        """δ = −(JᵀJ + λD)⁻¹ g; raises torch.linalg.LinAlgError if not positive definite."""
        if not self.cpu:
            chol = torch.linalg.cholesky(self.A + lam * torch.diag(D))
            return -torch.cholesky_solve(g[:, None], chol)[:, 0]
        from scipy.linalg import LinAlgError, cho_factor, cho_solve

        M = self.A.copy(order="F")
        M[np.diag_indices_from(M)] += lam * D.numpy()
        try:
            with _blas_threads():
                factor = cho_factor(M, lower=False, overwrite_a=True, check_finite=False)
                delta = cho_solve(factor, g.cpu().numpy(), check_finite=False)
        except (LinAlgError, np.linalg.LinAlgError) as exc:
            raise torch.linalg.LinAlgError(str(exc)) from None
        if not np.all(np.isfinite(delta)):
            raise torch.linalg.LinAlgError("non-finite Gauss–Newton step")
        return -torch.from_numpy(delta).to(self.device)


def _blas_threads():
    from threadpoolctl import threadpool_limits

    return threadpool_limits(torch.get_num_threads())


def levenberg_marquardt(vec: ParamVector, terms, gen, *, max_iters, rtol, params, reducer: Reducer,
                        reduction: float = 0.0, report=None) -> MinimizeResult:
    """``report(done)``: called before each iteration with the iterations done (progress)."""
    theta = vec.get()
    start = None  # the objective at the warm start
    world = reducer.world_size
    dense = params.linear_solver == "cholesky" or (params.linear_solver == "auto" and vec.size <= params.max_dense)
    lam = params.damping
    losses: list[float] = []
    batches = draw(terms, gen)
    final = float("nan")
    iterations = 0
    capped = True  # stays True when the loop ends at max_iters

    def global_sq(r: torch.Tensor) -> float:
        """‖r‖² over all ranks' rows."""
        return float(reducer.sum((r.double() ** 2).sum()[None])[0])

    def sq_norm(th, b) -> float:
        with torch.no_grad():
            return global_sq(residual_rows(terms, vec.point_fn(th), b, world))

    for it in range(max_iters):
        if report is not None:
            report(it)
        if it > 0 and params.resample == "iteration":
            batches = draw(terms, gen)
        iterations += 1
        r, J = residual_jacobian(vec, terms, theta, batches, world, params.chunk)
        f0 = global_sq(r)
        if f0 <= params.tol:
            final = f0
            losses.append(f0)
            capped = False
            break
        if params.gram_dtype == "float64":
            g = reducer.sum(J.double().T @ r.double())
        else:  # (no float64 copy of J: the product accumulates in float32, then the solve is float64)
            g = reducer.sum((J.T @ r.to(J.dtype)).double())
        if dense:
            normal = NormalEquations(J, reducer.sum, params.gram_dtype == "float64")
            # Marquardt scaling D = diag JᵀJ, floored at damping_floor × its mean: a direction
            # the residual barely sees (a dead unit, a zeroed output layer) is damped like an
            # average one instead of being free to take an arbitrarily large step.
            diag = normal.diag
            floor = params.damping_floor * float(diag.mean())
            D = diag.clamp_min(max(floor, 1e-12 * float(diag.max()) + 1e-30))

        def step_for(lam_: float) -> torch.Tensor:
            """δ solving (JᵀJ + λD) δ = −Jᵀr (D = I with matrix-free CG)."""
            if dense:
                return normal.solve(g, lam_, D)
            return -_cg(lambda v: reducer.sum((J.T @ (J @ v.to(J.dtype))).double()) + lam_ * v, g, params.cg_iters)

        accepted = False
        for tries in range(12):
            try:
                delta = step_for(lam)
            except torch.linalg.LinAlgError:
                lam *= 4
                continue
            trial = theta + delta.to(theta.dtype)
            f1 = sq_norm(trial, batches)
            if f1 == f1 and f1 < f0:  # finite and lower
                theta, accepted = trial, True
                lam = max(lam / 3, 1e-12)
                break
            lam *= 4
        if not accepted:
            final = f0
            losses.append(f0)
            capped = False
            break
        final = f1
        losses.append(f1)
        # Converged when an iteration gains less than rtol on its own samples, or (with
        # fresh samples every iteration) when the objective stops falling from one
        # iteration to the next: the sampling-noise floor is reached.
        stalled = len(losses) > 1 and f1 > (1 - rtol) * losses[-2]
        if start is None:
            start = f0
        reduced = reduction > 0 and f1 <= reduction * start
        # A small first gain counts as convergence only from the first λ tried: after
        # refused trials it was limited by the damping just raised, not by the problem.
        small_gain = (f0 - f1) < rtol * f0 and (it > 0 or tries == 0 or not params.damping_floor)
        if f1 <= params.tol or small_gain or stalled or reduced:
            capped = False
            break
    vec.set(theta)
    return MinimizeResult(iterations, final, losses, capped=capped)


# energies ----------------------------------------------------------------------------


def newton_cg(vec: ParamVector, terms, gen, *, max_iters, rtol, params, reducer: Reducer, report=None) -> MinimizeResult:
    """Damped Newton–CG with a backtracking line search on E(θ) = residual² + energy.
    ``report(done)`` before each iteration, as in :func:`levenberg_marquardt`."""
    theta = vec.get()
    world = reducer.world_size
    batches = draw(terms, gen)
    losses: list[float] = []
    lam = params.damping

    def energy(th, b):
        field = vec.point_fn(th)
        total = torch.zeros((), dtype=th.dtype)
        rows = residual_rows(terms, field, b, world, per_point=True)
        if rows.numel():
            total = total + (rows**2).sum() * world  # mean over ranks below restores the global sum
        e = energy_value(terms, field, b, per_point=True)
        if e is not None:
            total = total + e
        return total

    def value(th, b) -> float:
        with torch.no_grad():
            return float(reducer.mean(energy(th, b).detach()[None])[0])

    iterations = 0
    final = float("nan")
    capped = True  # unless the rtol rule ends the loop before max_iters
    for it in range(max_iters):
        if report is not None:
            report(it)
        if it > 0 and params.resample == "iteration":
            batches = draw(terms, gen)
        iterations += 1
        grad_fn = torch.func.grad(lambda th: energy(th, batches))
        g = reducer.mean(grad_fn(theta).detach())
        e0 = value(theta, batches)

        def hvp(v):
            return reducer.mean(jvp(grad_fn, (theta,), (v.to(theta.dtype),))[1].detach()).double()

        g64 = g.double()
        delta = -_cg(lambda v: hvp(v) + lam * v, g64, params.cg_iters)
        step, accepted = 1.0, False
        slope = float(g64 @ delta)
        if slope >= 0:  # not a descent direction: fall back to steepest descent
            delta, slope = -g64, -float(g64 @ g64)
        for _ in range(20):
            trial = theta + step * delta.to(theta.dtype)
            e1 = value(trial, batches)
            if e1 == e1 and e1 <= e0 + 1e-4 * step * slope:
                accepted = True
                break
            step *= 0.5
        if not accepted:
            lam *= 10
            losses.append(e0)
            final = e0
            continue
        theta = trial
        lam = max(lam / 3, 1e-12) if step == 1.0 else lam * 2
        losses.append(e1)
        final = e1
        if abs(e0 - e1) < rtol * max(abs(e0), 1e-12):
            capped = False
            break
    vec.set(theta)
    return MinimizeResult(iterations, final, losses, capped=capped)


def has_energy_split(terms) -> bool:
    """Every term is an energy with its ``inner``/``outer`` split (Gauss–Newton curvature)."""
    return bool(terms) and all(isinstance(t, Energy) and t.inner is not None and t.outer is not None for t in terms)


def ggn_newton(module, terms, gen, *, max_iters, rtol, params, reducer: Reducer, report=None) -> MinimizeResult:
    """Newton–CG on an energy with Gauss–Newton curvature, batched (see the module docstring).

    Descent: up to ``max_iters`` iterations, ending early once an accepted iteration
    gains less than ``rtol`` (relative) on its samples; then ``params.average`` more
    iterations whose mean is returned. λ adapts as in ``newton_cg`` but never falls below
    ``damping``: on a sampled energy it also bounds the step in directions the curvature
    samples barely see."""
    weights = [q for q in module.parameters() if q.requires_grad]
    sizes = [q.numel() for q in weights]
    field = module_point_fn(module)
    lam = params.damping
    losses: list[float] = []
    batches = draw(terms, gen)

    def flat(parts) -> torch.Tensor:
        return torch.cat([t.reshape(-1) for t in parts])

    def unflat(v: torch.Tensor) -> list[torch.Tensor]:
        return [t.view_as(q) for t, q in zip(torch.split(v.to(weights[0].dtype), sizes), weights, strict=True)]

    def put(theta: torch.Tensor) -> None:
        with torch.no_grad():
            for q, t in zip(weights, unflat(theta), strict=True):
                q.copy_(t)

    def features(term, batch):
        with batch_mode():
            return term.inner(field, batch)

    def outer_mean(term, y, batch):
        return term.weight * term.outer(y, batch).mean()

    def value(b) -> float:
        with torch.no_grad():
            total = sum(outer_mean(t, features(t, x), x) for t, x in zip(terms, b, strict=True))
        return float(reducer.mean(total.detach().reshape(1))[0])

    def subset(batch, n: int):
        size = batch_size(batch)
        if n <= 0 or n >= size:
            return batch
        idx = torch.randperm(size, generator=gen)[:n].to(_first(batch).device)
        return tuple(b[idx] for b in batch) if isinstance(batch, (tuple, list)) else batch[idx]

    def iteration(b, n_hessian: int, lam: float):
        """One damped Newton step from the module's weights; returns (e0, e1, step, accepted)."""
        # gradient and energy on the whole batch: backward through the local quantities
        e0_t, grads = 0.0, None
        for term, x in zip(terms, b, strict=True):
            y = features(term, x)
            leaf = y.detach().requires_grad_(True)
            e = outer_mean(term, leaf, x)
            (ge,) = torch.autograd.grad(e, leaf)
            g = torch.autograd.grad(y, weights, grad_outputs=ge)
            grads = list(g) if grads is None else [a + c for a, c in zip(grads, g, strict=True)]
            e0_t = e0_t + e.detach()
        g64 = reducer.mean(flat(grads)).double()
        e0 = float(reducer.mean(torch.as_tensor(e0_t).reshape(1))[0])
        # curvature: G v = Σ_terms Jᵀ (∇²outer) J v on a subset
        blocks = []
        for term, x in zip(terms, b, strict=True):
            xs = subset(x, n_hessian)
            y = features(term, xs)
            leaf = y.detach().requires_grad_(True)
            (ge,) = torch.autograd.grad(outer_mean(term, leaf, xs), leaf, create_graph=True)
            m = y.shape[-1]
            hess = torch.stack([torch.autograd.grad(ge[..., j].sum(), leaf, retain_graph=True)[0] for j in range(m)], -2)
            evals, evecs = torch.linalg.eigh(hess.detach())
            hess = (evecs * evals.clamp_min(0)[..., None, :]) @ evecs.transpose(-1, -2)
            probe = torch.zeros_like(y, requires_grad=True)
            jt_probe = torch.autograd.grad(y, weights, grad_outputs=probe, create_graph=True)  # Jᵀ probe, linear in probe
            blocks.append((y, hess, probe, jt_probe))

        def gv(v: torch.Tensor) -> torch.Tensor:
            vs, out = unflat(v), None
            for y, hess, probe, jt_probe in blocks:
                (jv,) = torch.autograd.grad(jt_probe, probe, grad_outputs=vs, retain_graph=True)
                u = (hess @ jv[..., None])[..., 0]
                part = flat(torch.autograd.grad(y, weights, grad_outputs=u, retain_graph=True))
                out = part if out is None else out + part
            return reducer.mean(out).double() + lam * v

        delta = -_cg(gv, g64, params.cg_iters)
        slope = float(g64 @ delta)
        if slope >= 0:  # not a descent direction: steepest descent
            delta, slope = -g64, -float(g64 @ g64)
        theta0 = flat([q.detach() for q in weights]).clone()
        step = 1.0
        for _ in range(20):
            put(theta0 + step * delta.to(theta0.dtype))
            e1 = value(b)
            if e1 == e1 and e1 <= e0 + 1e-4 * step * slope:
                return e0, e1, step, True
            step *= 0.5
        put(theta0)
        return e0, e0, 0.0, False

    iterations, final = 0, float("nan")
    capped = True  # unless the rtol rule ends the descent before max_iters (averaging is not descent)
    for it in range(max_iters):
        if report is not None:
            report(it)
        if it > 0 and params.resample == "iteration":
            batches = draw(terms, gen)
        iterations += 1
        e0, e1, step, accepted = iteration(batches, params.hessian_samples, lam)
        losses.append(e1)
        final = e1
        if not accepted:
            lam *= 10
            continue
        lam = max(lam / 3, params.damping) if step == 1.0 else lam * 2
        if abs(e0 - e1) < rtol * max(abs(e0), 1e-12):
            capped = False
            break
    if params.average:
        mean = None
        for k in range(params.average):
            batches = draw(terms, gen)
            iterations += 1
            _, e1, step, accepted = iteration(batches, params.average_hessian_samples or params.hessian_samples, lam)
            if accepted:
                lam = max(lam / 3, params.damping) if step == 1.0 else lam * 2
            else:
                lam *= 10
            losses.append(e1)
            theta = flat([q.detach() for q in weights]).double()
            mean = theta if mean is None else mean + (theta - mean) / (k + 1)
        put(mean)
        final = value(batches)
    return MinimizeResult(iterations, final, losses, capped=capped)


def _first(batch):
    return batch[0] if isinstance(batch, (tuple, list)) else batch


__all__ = ["GaussNewton", "ggn_newton", "levenberg_marquardt", "newton_cg", "residual_jacobian"]
