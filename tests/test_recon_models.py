"""Each reconstruction model can represent a small smooth space-time field, and MMGN
has the structure the paper describes."""

import numpy as np
import pytest
import torch

from insr_hpc.catalog import build_config
from insr_hpc.fields import MODELS
from insr_hpc.recon.metrics import errors
from insr_hpc.recon.trainer import Trainer, make_problem

SMALL = {
    "mmgn": {"width": 32, "layers": 3, "latent": 8, "input_scale": 32.0},
    "siren": {"depth": 3, "width": 48, "omega0": 10.0},
    "ffn_p": {"width": 64, "depth": 3, "frequencies": 8, "sigma": 4.0},
    "ffn_g": {"width": 64, "depth": 3, "features": 32, "sigma": 2.0},
    "resmlp": {"width": 64, "depth": 3},
}
LR = {"mmgn": 5e-3, "siren": 1e-3, "ffn_p": 2e-3, "ffn_g": 2e-3, "resmlp": 2e-3}


def synthetic(t=6, h=10, w=12):
    lat, lon = np.linspace(-30, 30, h), np.linspace(100, 200, w)
    la, lo = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    amp = 1.0 + 0.5 * np.arange(t)[:, None, None] / t
    values = 285.0 + 10.0 * amp * np.sin(2 * np.pi * la) * np.cos(np.pi * lo)
    return values, lat, lon


@pytest.mark.parametrize("model", sorted(SMALL))
def test_model_overfits_a_small_field(model):
    values, lat, lon = synthetic()
    observed = np.ones(values.shape, dtype=bool)
    valid = np.ones(values.shape[1:], dtype=bool)
    cfg = build_config({
        "workload": "recon", "seed": 0, "network": {"model": model, **SMALL[model]},
        "train": {"epochs": 1, "batch_steps": 3, "lr": LR[model], "lr_by_model": {}, "lr_decay": 0.99},
    })
    problem = make_problem(values, observed, lat, lon)
    trainer = Trainer(cfg.network, cfg.train, problem, 0, torch.device("cpu"))
    first = errors(problem.denormalise(trainer.predict()), values, valid, observed, problem.lo, problem.hi)["mse"]
    for _ in range(200):
        trainer.train_epoch()
    mse = errors(problem.denormalise(trainer.predict()), values, valid, observed, problem.lo, problem.hi)["mse"]
    assert mse < 1e-3, (model, first, mse)
    assert mse < first / 50


def test_mmgn_param_count_matches_the_paper_model():
    # the authors' class has 566 529 parameters on 240 time steps (with latents), 512 of
    # them an A_0 that multiplies zeros; ours omits it
    net = MODELS.get("mmgn").build(MODELS.get("mmgn").Params(), 2, 1)
    assert sum(p.numel() for p in net.parameters()) + 240 * 128 == 566_529 - 512


def test_mmgn_shared_positions_give_the_same_values():
    torch.manual_seed(0)
    net = MODELS.get("mmgn").build(MODELS.get("mmgn").Params(width=16, layers=2, latent=4), 2, 1)
    x = torch.rand(5, 2)
    codes = torch.randn(3, 4)
    x_index = torch.tensor([0, 4, 4, 2, 1, 0])
    t = torch.tensor([0, 1, 2, 2, 1, 0])
    a = net(x, codes=codes, index=t, x_index=x_index)
    b = net(x[x_index], codes=codes, index=t)
    assert torch.allclose(a, b, atol=1e-6)
    # the latent code changes the output: the field depends on time through z_t only
    assert not torch.allclose(a[1], net(x[4:5], codes=codes[:1], index=torch.tensor([0]))[0])


@pytest.mark.parametrize("task", ["task1", "task3", "task4"])
def test_mmgn_step_blocks_equal_the_per_point_path(task):
    """The (steps, points) block evaluation used when every step of a batch has as many
    observations (fixed sensors; a fixed ratio of redrawn points) gives the per-point
    path's values and gradients; unequal counts (task 4) fall back to it."""
    from insr_hpc.recon.tasks import observation_mask

    values, lat, lon = synthetic(t=8)
    valid = np.ones(values.shape[1:], dtype=bool)
    observed = observation_mask(task, 0.3, 0.1, valid, values.shape[0], 3)
    cfg = build_config({"workload": "recon", "seed": 0, "network": {"model": "mmgn", **SMALL["mmgn"]},
                        "train": {"epochs": 1, "batch_steps": 4}})
    trainer = Trainer(cfg.network, cfg.train, make_problem(values, observed, lat, lon), 0, torch.device("cpu"))
    with torch.no_grad():
        trainer.codes.normal_()  # codes start at zero: make each step's modulation differ
    steps = np.array([5, 1, 6])
    idx = trainer._batch_points(steps)

    def value_and_grads(fn):
        for p in trainer.params:
            p.grad = None
        out = fn()
        (out * torch.linspace(-1, 2, out.shape[0])[:, None]).sum().backward()
        return out.detach(), [p.grad.clone() for p in trainer.params]

    a, ga = value_and_grads(lambda: trainer._observed_field(steps, idx))
    b, gb = value_and_grads(lambda: trainer.field(trainer.obs_pix[idx], trainer.obs_t[idx]))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    for x, y in zip(ga, gb, strict=True):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4)
    assert float(a.abs().max()) > 1e-3  # not a trivially zero field
    # the whole-grid prediction by blocks equals the per-point one
    with torch.no_grad():
        n_t, h, w = trainer.problem.shape
        pix = torch.arange(h * w).repeat(n_t)
        t = torch.arange(n_t).repeat_interleave(h * w)
        per_point = trainer.field(pix, t).reshape(n_t, h, w).double().numpy()
    np.testing.assert_allclose(trainer.predict(), per_point, atol=1e-5)
