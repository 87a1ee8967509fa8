"""The ``recon`` workload: load a field, choose the observed points, train a neural field
on them, write the reconstruction to a Zarr store and TensorBoard.

Idempotent: a run directory holds ``checkpoint.pt`` (model, optimiser, latent codes, lr
schedule and RNG states, written atomically every ``train.checkpoint_every`` epochs); a
run started again continues from it and reproduces the uninterrupted run's numbers.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from insr_hpc.config.load import config_to_dict, config_to_yaml
from insr_hpc.fields import MODELS, flatten_params, param_layout
from insr_hpc.monitor import Monitor
from insr_hpc.recon import metrics
from insr_hpc.recon.config import ReconConfig
from insr_hpc.recon.data import Field, load_field
from insr_hpc.recon.figures import field_figure
from insr_hpc.recon.store import Array, create_store
from insr_hpc.recon.tasks import observation_mask
from insr_hpc.recon.trainer import Trainer, make_problem
from insr_hpc.runtime import RunEnv, git_commit, package_versions
from insr_hpc.store import StepStore, json_safe
from insr_hpc.workloads import WORKLOADS, hparams, reopen_store

METRICS = ("mse", "mse_unobserved", "rmse")


def store_arrays(cfg: ReconConfig, fld: Field, observed: np.ndarray, trainer: Trainer) -> dict[str, Array]:
    n_t, h, w = fld.values.shape
    e = cfg.train.epochs
    space = ("time", "latitude", "longitude")
    var_attrs = {k: fld.attrs[k] for k in ("standard_name", "long_name", "units") if k in fld.attrs}
    arrays = {
        "time": Array(("time",), (n_t,), "float64", fld.time_attrs, fld.time, (n_t,)),
        "latitude": Array(("latitude",), (h,), "float64", fld.lat_attrs, fld.lat, (h,)),
        "longitude": Array(("longitude",), (w,), "float64", fld.lon_attrs, fld.lon, (w,)),
        "epoch": Array(("epoch",), (e,), "int32", {"long_name": "training epoch (1-based)"}, np.arange(1, e + 1), (e,)),
        "committed": Array(("epoch",), (e,), "uint8", {"long_name": "1 once every per-epoch array of this epoch is written"}),
        "loss": Array(("epoch",), (e,), "float64", {"long_name": "mean L1 loss on observed points", "units": "1 (normalised)"}),
        "mse": Array(("epoch",), (e,), "float64", {"long_name": "MSE over all valid grid points", "units": "1 (normalised)"}),
        "mse_unobserved": Array(("epoch",), (e,), "float64", {"long_name": "MSE over unobserved valid points", "units": "1 (normalised)"}),
        "rmse": Array(("epoch",), (e,), "float64", {"long_name": "RMSE over all valid grid points", "units": fld.units}),
        "lr": Array(("epoch",), (e,), "float64", {"long_name": "learning rate during the epoch"}),
        "seconds": Array(("epoch",), (e,), "float64", {"long_name": "wall time of the epoch's training", "units": "s"}),
        "observed": Array(space, (n_t, h, w), "uint8", {"long_name": "1 where the point was given to the model"}, observed.astype(np.uint8)),
        "target": Array(space, (n_t, h, w), "float32", {**var_attrs, "long_name": f"{fld.variable} (source)"}, fld.values),
        "reconstruction": Array(space, (n_t, h, w), "float32", {**var_attrs, "long_name": f"reconstructed {fld.variable}"}),
        "error": Array(space, (n_t, h, w), "float32", {"long_name": "reconstruction − target", "units": fld.units}),
        "weights": Array(("parameter",), (trainer.n_params(with_codes=False),), "float32",
                         {"long_name": "flattened network parameters; layout in attrs param_layout"}),
    }
    if trainer.codes is not None:
        arrays["latent_code"] = Array(("time", "latent"), tuple(trainer.codes.shape), "float32", {"long_name": "per-time-step latent code z_t"})
    for name in ("loss", "mse", "mse_unobserved", "rmse", "lr", "seconds"):
        arrays[name].attrs["coordinates"] = "epoch"
    return arrays


def store_attrs(cfg: ReconConfig, fld: Field, trainer: Trainer, run_id: str) -> dict[str, Any]:
    return json_safe({
        "title": f"insr-hpc reconstruction of {fld.variable} ({cfg.network.model}, {cfg.task.name}) run {run_id}",
        "run_id": run_id, "workload": "recon", "model": cfg.network.model, "task": cfg.task.name,
        "source": cfg.data.path, "variable": fld.variable, "source_dims": list(fld.dims),
        "normalisation": {"lo": trainer.problem.lo, "hi": trainer.problem.hi},
        "n_params": trainer.n_params(), "lr": trainer.lr, "seed": cfg.seed,
        "config": config_to_dict(cfg), "config_yaml": config_to_yaml(cfg),
        "git_commit": git_commit(), "versions": package_versions(), "param_layout": param_layout(trainer.model),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })


def _save_checkpoint(path: str, trainer: Trainer) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    torch.save(trainer.state_dict(), tmp)
    os.replace(tmp, path)  # a crash leaves the previous checkpoint whole


def run_recon(cfg: ReconConfig, run_dir: str, env: RunEnv, run_id: str = "r000") -> dict[str, Any]:
    """Run (or resume) one reconstruction. Returns the final errors and timings."""
    fld = load_field(cfg.data.path, cfg.data.variable)
    observed = observation_mask(cfg.task.name, cfg.task.ratio, cfg.task.ratio_min, fld.valid, fld.values.shape[0], cfg.task.seed)
    problem = make_problem(fld.values, observed, fld.lat, fld.lon)
    trainer = Trainer(cfg.network, cfg.train, problem, cfg.seed, env.device)
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, "store.zarr")
    ckpt = os.path.join(run_dir, "checkpoint.pt")
    store = reopen_store(path, cfg)
    if store is not None:
        if store.attrs.get("complete"):
            return _summary(store)
        if os.path.exists(ckpt):
            trainer.load_state_dict(torch.load(ckpt, map_location=env.device, weights_only=False))
    else:
        store = create_store(path, store_arrays(cfg, fld, observed, trainer), store_attrs(cfg, fld, trainer, run_id))
    start = trainer.epoch
    n_batches = -(-fld.values.shape[0] // cfg.train.batch_steps)
    monitor = Monitor(os.path.join(run_dir, "tb"), start, start * n_batches, cfg.output.log_every)
    epochs = cfg.train.epochs
    bar = tqdm(total=epochs, initial=start, desc=run_id, unit="epoch", disable=None if env.progress else True, leave=False)
    pred = None  # the last evaluation's field, reused for the store after the last epoch
    try:
        for epoch in range(start + 1, epochs + 1):
            lr = trainer.optimizer.param_groups[0]["lr"]
            loss, batch_losses, seconds = trainer.train_epoch()
            monitor.iteration_losses("train_l1", batch_losses, (epoch - 1) * n_batches)
            values = {"loss": loss, "lr": lr, "seconds": seconds}
            last = epoch == epochs
            if last or epoch % cfg.train.eval_every == 0:
                pred = problem.denormalise(trainer.predict())
                values.update(metrics.errors(pred, fld.values, fld.valid, observed, problem.lo, problem.hi))
                every = cfg.output.figure_every
                if last or (every and epoch % every == 0):
                    monitor.step_figure(epoch, "maps", field_figure(fld, pred, observed, t=0))
            store.commit_step(epoch - 1, values)
            monitor.step_scalars(epoch, {k if k in METRICS else f"train/{k}": v for k, v in values.items()})
            if last or epoch % cfg.train.checkpoint_every == 0:
                _save_checkpoint(ckpt, trainer)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.2e}", **({"mse": f"{values['mse']:.2e}"} if "mse" in values else {}))
        if pred is None:  # resumed after the last epoch was committed
            pred = problem.denormalise(trainer.predict())
        pred[:, ~fld.valid] = np.nan  # no data there (land in SST): nothing to reconstruct
        final = {
            "reconstruction": pred, "error": pred - fld.values, "weights": flatten_params(trainer.model),
        }
        if trainer.codes is not None:
            final["latent_code"] = trainer.codes.detach().cpu().numpy()
        for name, value in final.items():
            store.group[name][...] = value
        summary = _summary(store)
        monitor.hparams(hparams(cfg, ("data", "task", "train", "network")), {k: summary[k] for k in METRICS})
        store.finish({"complete": True, "final_errors": {k: summary[k] for k in METRICS},
                      "seconds_per_epoch": summary["seconds_per_epoch"]})
        return summary
    finally:
        bar.close()
        monitor.close()


def _summary(store: StepStore) -> dict[str, Any]:
    g = store.group
    out = {k: float(g[k][-1]) for k in METRICS}
    out["epochs"] = int(store.completed_steps())
    out["seconds_per_epoch"] = float(np.nanmedian(np.asarray(g["seconds"][:])))
    out["n_params"] = int(store.attrs.get("n_params", 0))
    return out


@WORKLOADS.register("recon")
class ReconWorkload:
    config_class = ReconConfig
    tagged_sections = {"network": ("model", MODELS)}
    run = staticmethod(run_recon)
