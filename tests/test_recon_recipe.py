"""The training recipe (summed L1, unit-norm clipping, AdamW) against a hand computation,
the validation split, model selection and the guard rails."""

import numpy as np
import pytest
import torch

from insr_hpc.catalog import build_config
from insr_hpc.recon.metrics import errors
from insr_hpc.recon.tasks import observation_mask, validation_split
from insr_hpc.recon.trainer import DivergedError, Trainer, make_problem
from insr_hpc.recon.guard import guard
from insr_hpc.store import decode_attrs


def smooth_field(n_t=6, h=8, w=10):
    lat, lon = np.linspace(30, 50, h), np.linspace(-120, -90, w)
    t = np.arange(n_t)[:, None, None]
    values = 280 + 5 * np.sin(np.radians(lat)[None, :, None] * 4 + 0.3 * t) * np.cos(np.radians(lon)[None, None, :] * 3)
    return values, lat, lon


def trainer_for(network, train, validation=0.0, task="task3", ratio=0.3, seed=5):
    values, lat, lon = smooth_field()
    obs = observation_mask(task, ratio, 0.1, np.ones(values.shape[1:], bool), values.shape[0], 11)
    tr, val = validation_split(task, obs, validation, 11)
    cfg = build_config({"workload": "recon", "seed": seed, "device": "cpu", "network": network,
                        "data": {"path": "sample:A1B_north_america.nc", "variable": "air_temperature"},
                        "train": {"validation": validation, "select": "best" if validation else "last", **train}})
    problem = make_problem(values, tr, lat, lon, val)
    return Trainer(cfg.network, cfg.train, problem, cfg.seed, torch.device("cpu")), values, obs, tr, val


RESMLP = {"model": "resmlp", "width": 16, "depth": 2}


def manual_epoch(trainer, reduction: str, clip: float, lr: float, wd: float, seed: int):
    """One epoch by hand: the same batches, L1 summed (or averaged), the gradient scaled
    to norm ``clip`` when longer, then AdamW written out (β = 0.9, 0.999; ε = 1e-8)."""
    params = [p.detach().clone().requires_grad_(True) for p in trainer.model.parameters()]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    pb = trainer.problem
    n_t = pb.shape[0]
    perm = torch.randperm(n_t, generator=torch.Generator().manual_seed(seed)).numpy()
    step, factors = 0, []
    for k in range(0, n_t, trainer.cfg.batch_steps):
        idx = np.concatenate([np.arange(pb.offsets[t], pb.offsets[t + 1]) for t in perm[k : k + trainer.cfg.batch_steps]])
        t_of = np.repeat(np.arange(n_t), np.diff(pb.offsets))[idx]
        x = torch.as_tensor(np.c_[pb.grid[pb.obs_pix[idx]], pb.times[t_of]], dtype=torch.float32)
        y = torch.as_tensor(pb.obs_val[idx], dtype=torch.float32)[:, None]
        pred = torch.func.functional_call(trainer.model, dict(zip([n for n, _ in trainer.model.named_parameters()], params)), (x,))
        loss = (pred - y).abs().sum()
        if reduction == "mean":
            loss = loss / len(idx)
        grads = torch.autograd.grad(loss, params)
        norm = torch.sqrt(sum((g * g).sum() for g in grads))
        factor = min(1.0, clip / (float(norm) + 1e-6))
        factors.append(factor)
        grads = [g * factor for g in grads]
        step += 1
        with torch.no_grad():
            for p, g, mi, vi in zip(params, grads, m, v):
                p.mul_(1 - lr * wd)
                mi.mul_(0.9).add_(0.1 * g)
                vi.mul_(0.999).add_(0.001 * g * g)
                p.sub_(lr * (mi / (1 - 0.9**step)) / (torch.sqrt(vi / (1 - 0.999**step)) + 1e-8))
    return params, factors


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_summed_l1_with_unit_norm_clipping_matches_the_hand_computed_step(reduction):
    train = {"batch_steps": 2, "lr": 1e-2, "weight_decay": 1e-3, "loss_reduction": reduction, "grad_clip": 0.999}
    trainer, *_ = trainer_for(RESMLP, train)
    expected, factors = manual_epoch(trainer, reduction, 0.999, 1e-2, 1e-3, seed=5)
    if reduction == "sum":  # the summed loss's gradient is long: every step is clipped
        assert len(factors) == 3 and max(factors) < 0.5
    trainer.train_epoch()
    for got, want in zip(trainer.model.parameters(), expected):
        torch.testing.assert_close(got.detach(), want.detach(), rtol=1e-5, atol=1e-6)


def test_sum_and_mean_reductions_take_different_steps():
    # with three batches of different sizes, Adam's moments see differently scaled
    # gradients: the two recipes must not coincide (or the test above proves nothing)
    a, *_ = trainer_for(RESMLP, {"batch_steps": 2, "loss_reduction": "sum", "grad_clip": 0.999})
    b, *_ = trainer_for(RESMLP, {"batch_steps": 2, "loss_reduction": "mean", "grad_clip": 0.999})
    a.train_epoch()
    b.train_epoch()
    diff = max(float((p - q).detach().abs().max()) for p, q in zip(a.model.parameters(), b.model.parameters()))
    assert diff > 1e-4


@pytest.mark.parametrize("task", ["task1", "task2", "task3", "task4"])
def test_validation_split_is_disjoint_and_covers_the_observations(task):
    valid = np.ones((20, 30), bool)
    obs = observation_mask(task, 0.1, 0.05, valid, 12, 3)
    train, val = validation_split(task, obs, 0.2, 3)
    assert not (train & val).any() and ((train | val) == obs).all()
    assert train.reshape(12, -1).sum(1).min() >= 1  # every time step keeps a training point
    frac = val.sum() / obs.sum()
    assert 0.1 < frac <= 0.2 + 1e-9, frac
    if task in ("task1", "task2"):  # whole sensors: a validation position is never trained on
        assert not (val.any(0) & train.any(0)).any()
    again = validation_split(task, obs, 0.2, 3)
    assert (again[1] == val).all()


def test_validation_points_are_neither_trained_on_nor_counted_as_held_out():
    trainer, values, obs, tr, val = trainer_for(RESMLP, {}, validation=0.25)
    pb = trainer.problem
    n_t = pb.shape[0]
    train_keys = set(zip(np.repeat(np.arange(n_t), np.diff(pb.offsets)).tolist(), pb.obs_pix.tolist()))
    val_keys = set(zip(pb.val_t.tolist(), pb.val_pix.tolist()))
    assert val_keys and not train_keys & val_keys
    assert len(train_keys) == tr.sum() and len(val_keys) == val.sum()
    # a prediction exact everywhere except wildly wrong on the validation points: the
    # held-out error (points never observed) must not see it
    pred = values.copy()
    pred[val] += 100.0
    e = errors(pred, values, np.ones(values.shape[1:], bool), obs, values.min(), values.max())
    assert e["mse_unobserved"] == 0.0 and e["mse"] > 0


def test_best_validation_weights_are_restored():
    trainer, *_ = trainer_for(RESMLP, {"batch_steps": 2, "lr": 5e-3}, validation=0.25)
    history = []
    for _ in range(4):
        trainer.train_epoch()
        history.append(trainer.validation_mse())
        trainer.observe_validation(history[-1])
    best = int(np.argmin(history))
    assert trainer.best["epoch"] == best + 1 and trainer.best["val_mse"] == history[best]
    trainer.use_best()
    assert trainer.validation_mse() == pytest.approx(history[best], rel=1e-6)


def test_a_diverging_loss_fails_naming_the_epoch():
    trainer, *_ = trainer_for(RESMLP, {"batch_steps": 2, "lr": 1e30, "grad_clip": 0})
    with pytest.raises(DivergedError, match=r"non-finite training loss .* at epoch [12], batch \d"):
        for _ in range(2):
            trainer.train_epoch()


def test_guard_flags_an_exploded_reconstruction_and_a_growing_validation_error():
    cfg = build_config({"workload": "recon", "data": {"path": "sample:A1B_north_america.nc", "variable": "air_temperature"},
                        "network": {"model": "ffn_p"}})
    valid = np.ones((4, 5), bool)
    obs_values = np.array([-2.3, 0.0, 4.3])
    calm = np.full((3, 4, 5), 1.0)
    history = np.array([0.5, 0.1, 0.12, np.nan])
    assert guard(cfg, calm, valid, obs_values, history, "K") is None
    # the silent failure of the issue: values of -170 on a field spanning -2.3…4.3
    wild = calm.copy()
    wild[1, 2, 3] = -170.0
    reason = guard(cfg, wild, valid, obs_values, history, "K")
    assert reason and "[-170, 1] K" in reason and "guard_range=1" in reason
    within = calm.copy()
    within[0, 0, 0] = 4.3 + 6.5  # 6.5 < one range (6.6) above the highest observation
    assert guard(cfg, within, valid, obs_values, history, "K") is None
    grown = guard(cfg, calm, valid, obs_values, np.array([0.5, 0.01, 0.2]), "K")
    assert grown and "from 1.000e-02 (epoch 2) to 2.000e-01 (epoch 3)" in grown


def _tiny_run(tmp_path, *overrides):
    import xarray as xr

    from insr_hpc.cli import main

    values, lat, lon = smooth_field()
    path = str(tmp_path / "f.nc")
    xr.Dataset({"tas": (("time", "lat", "lon"), values, {"units": "K"})},
               coords={"lat": ("lat", lat, {"units": "degrees_north"}), "lon": ("lon", lon, {"units": "degrees_east"}),
                       "time": ("time", np.arange(values.shape[0]) * 1.0, {"units": "days since 2000-01-01"})}).to_netcdf(path)
    root = tmp_path / "runs"
    code = main(["run", "configs/reconstruct.yaml", f"output.root={root}", f"data.path={path}", "data.variable=tas",
                 "device=cpu", "task.name=task3", "task.ratio=0.3", "train.epochs=3", "train.eval_every=1",
                 "network.model=resmlp", "network.width=8", "network.depth=1", "output.figure_every=0", *overrides])
    return code, root / "reconstruct" / "r000"


def test_a_run_failing_a_guard_rail_ends_suspect_not_done(tmp_path, capsys):
    import json

    import zarr

    from insr_hpc.cli import main

    # any departure from the observed range counts: the plumbing, with a real model
    code, run_dir = _tiny_run(tmp_path, "train.lr=3")  # an exploding, still finite model
    assert code == 0
    state = json.load(open(run_dir / "run.json"))
    assert state["state"] == "suspect" and "beyond the observed" in state["reason"]
    assert "beyond the observed" in dict(zarr.open_group(str(run_dir / "store.zarr"), mode="r").attrs)["suspect"]
    capsys.readouterr()
    main(["status", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert "suspect" in out and "mse=" in out and "nan" not in out.lower()
    assert "epoch 3/3" in open(run_dir / "log.txt").read()


def test_a_nan_loss_fails_the_run_naming_the_epoch(tmp_path):
    import json

    code, run_dir = _tiny_run(tmp_path, "train.lr=1e30", "train.grad_clip=0")
    assert code == 1
    state = json.load(open(run_dir / "run.json"))
    # one batch per epoch: epoch 1's loss is finite, the step it takes is not
    assert state["state"] == "failed" and state["reason"] == "DivergedError: non-finite reconstruction at epoch 1"


def test_training_data_is_normalised_by_the_training_observations_alone():
    """Neither the unobserved truth nor the validation points reach the network, not
    even through the normalisation: the field with every such point moved far outside
    the observed range gives the very same training problem."""
    values, lat, lon = smooth_field()
    obs = observation_mask("task1", 0.3, 0.1, np.ones(values.shape[1:], bool), values.shape[0], 11)
    tr, val = validation_split("task1", obs, 0.2, 11)
    assert val.any() and (~obs).any()
    moved = np.where(tr, values, values + np.where(val, -40.0, 60.0))
    a, b = make_problem(values, tr, lat, lon, val), make_problem(moved, tr, lat, lon, val)
    assert (a.lo, a.hi) == (values[tr].min(), values[tr].max()) == (b.lo, b.hi)
    np.testing.assert_array_equal(a.obs_val, b.obs_val)
    assert a.obs_val.min() == 0.0 and a.obs_val.max() == 1.0
    # the validation targets are scored in the same (training) units, so moved ones differ
    assert not np.allclose(a.val_val, b.val_val)


def test_stored_validation_mse_is_in_the_metrics_units(tmp_path):
    """The per-epoch ``val_mse`` of the store and the final one (of the kept weights)
    share the metrics' normalisation, though training normalises otherwise: the final
    value equals the kept epoch's entry."""
    import xarray as xr

    code, run_dir = _tiny_run(tmp_path, "train.epochs=6", "train.lr=1e-2")
    assert code == 0
    ds = xr.open_zarr(str(run_dir / "store.zarr"))
    ds.attrs = decode_attrs(ds.attrs)  # nested attributes are JSON text in the store
    kept = int(ds.attrs["selected_epoch"])
    train_span = ds.attrs["normalisation"]["hi"] - ds.attrs["normalisation"]["lo"]
    metric_span = ds.attrs["metric_range"]["hi"] - ds.attrs["metric_range"]["lo"]
    assert abs(train_span / metric_span - 1) > 0.005  # the two ranges differ here (val_mse by 2 %), so units matter
    assert float(ds.val_mse.values[kept - 1]) == pytest.approx(ds.attrs["final_errors"]["val_mse"], rel=1e-5)
