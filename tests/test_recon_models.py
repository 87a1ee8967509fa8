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
