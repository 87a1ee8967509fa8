"""The ``recon`` workload: load a field, choose the observed points, train a neural field
on them, write the reconstruction to a Zarr store and TensorBoard.

Idempotent: a run directory holds ``checkpoint.pt`` (model, optimiser, latent codes, lr
schedule, RNG states and the best validation weights, written atomically every
``train.checkpoint_every`` epochs); a run started again continues from it and
reproduces the uninterrupted run's numbers.

Classical models (``network.model`` = ``idw`` | ``kriging``) interpolate the same
training observations in one pass: a store with a single "epoch".

Guard rails: a NaN/Inf loss or reconstruction fails the run naming the epoch; a
reconstruction far outside the observed range, or a validation error that grew far past
its best, makes the summary carry ``suspect`` (the run ends ``suspect``, not ``done``).
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
from insr_hpc.recon.config import TAGGED_SECTIONS, ReconConfig
from insr_hpc.recon.data import Field, load_field
from insr_hpc.recon.figures import field_figure
from insr_hpc.recon.guard import guard
from insr_hpc.recon.progress import ProgressLog
from insr_hpc.recon.store import create_store
from insr_hpc.fields.crossval import clusters_of, deal_folds, fold_spread
from insr_hpc.recon.tasks import FIXED_POSITIONS, observation_mask, validation_split
from insr_hpc.recon.trainer import DivergedError, Trainer, make_problem
from insr_hpc.runtime import RunEnv, git_commit, package_versions
from insr_hpc.rundir import ProgressNote, RunDir
from insr_hpc.store import StepStore, VarSpec, json_safe
from insr_hpc.workloads import WORKLOADS, hparams, reopen_store

METRICS = ("mse", "mse_unobserved", "rmse", "val_mse")


def _units_attrs(fld: Field) -> dict[str, str]:
    if fld.units is None:
        return {"comment": f"units unknown: the source variable '{fld.variable}' has no units attribute"}
    return {"units": fld.units}


def _coord_attrs(fld: Field) -> tuple[dict, dict, dict]:
    """CF attributes of time, latitude, longitude: the source's, completed where it
    lacks them (a source without a time coordinate: the time index, units "1")."""
    t, lat, lon = dict(fld.time_attrs), dict(fld.lat_attrs), dict(fld.lon_attrs)
    if " since " in str(t.get("units", "")):
        t.setdefault("standard_name", "time")
    t.setdefault("long_name", "time")
    t.setdefault("units", "1")
    t.setdefault("axis", "T")
    for attrs, name in ((lat, "latitude"), (lon, "longitude")):
        attrs.setdefault("long_name", name)
        if attrs.get("units") in ("degrees_north", "degrees_east"):
            attrs.setdefault("standard_name", name)
    return t, lat, lon


def store_arrays(cfg: ReconConfig, fld: Field, observed: np.ndarray, validation: np.ndarray, n_epochs: int,
                 n_weights: int, latent_shape: tuple[int, int] | None) -> dict[str, VarSpec]:
    n_t, h, w = fld.values.shape
    e = n_epochs
    space = ("time", "latitude", "longitude")
    var_attrs = {k: fld.attrs[k] for k in ("standard_name", "long_name") if k in fld.attrs} | _units_attrs(fld)
    norm = {"units": "1", "comment": "normalised: divided by the squared range (max − min) of the true field"}
    one = {"units": "1"}
    t_attrs, lat_attrs, lon_attrs = _coord_attrs(fld)
    arrays = {
        "time": VarSpec(("time",), (n_t,), "float64", t_attrs, fld.time, (n_t,)),
        "latitude": VarSpec(("latitude",), (h,), "float64", lat_attrs, fld.lat, (h,)),
        "longitude": VarSpec(("longitude",), (w,), "float64", lon_attrs, fld.lon, (w,)),
        "epoch": VarSpec(("epoch",), (e,), "int32", {"long_name": "training epoch (1-based)", **one}, np.arange(1, e + 1), (e,)),
        "committed": VarSpec(("epoch",), (e,), "uint8", {"long_name": "1 once every per-epoch array of this epoch is written", **one}),
        "loss": VarSpec(("epoch",), (e,), "float64", {"long_name": "mean L1 loss per training point",
                                                      "units": "1", "comment": "in the network's units: the training "
                                                      "observations' range mapped to [0, 1]"}),
        "val_mse": VarSpec(("epoch",), (e,), "float64", {"long_name": "MSE on the validation observations", **norm}),
        "mse": VarSpec(("epoch",), (e,), "float64", {"long_name": "MSE over all valid grid points", **norm}),
        "mse_unobserved": VarSpec(("epoch",), (e,), "float64", {"long_name": "MSE over unobserved valid points", **norm}),
        "rmse": VarSpec(("epoch",), (e,), "float64", {"long_name": "RMSE over all valid grid points", **_units_attrs(fld)}),
        "lr": VarSpec(("epoch",), (e,), "float64", {"long_name": "learning rate during the epoch", **one}),
        "seconds": VarSpec(("epoch",), (e,), "float64", {"long_name": "wall time of the epoch's training", "units": "s"}),
        "cpu_seconds": VarSpec(("epoch",), (e,), "float64", {"long_name": "CPU time of the epoch's training (this "
                                                            "process, every thread)", "units": "s"}),
        "observed": VarSpec(space, (n_t, h, w), "uint8", {"long_name": "1 where the point was observed (training or validation)", **one},
                          observed.astype(np.uint8)),
        "validation": VarSpec(space, (n_t, h, w), "uint8", {"long_name": "1 where an observation was held back for validation", **one},
                            validation.astype(np.uint8)),
        "target": VarSpec(space, (n_t, h, w), "float32", {**var_attrs, "long_name": f"{fld.variable} (source)"}, fld.values),
        "reconstruction": VarSpec(space, (n_t, h, w), "float32", {**var_attrs, "long_name": f"reconstructed {fld.variable}"}),
        "error": VarSpec(space, (n_t, h, w), "float32", {"long_name": "reconstruction − target", **_units_attrs(fld)}),
    }
    if n_weights:
        arrays["weights"] = VarSpec(("parameter",), (n_weights,), "float32",
                                  {"long_name": "flattened network parameters; layout in attrs param_layout", **one})
    if latent_shape is not None:
        arrays["latent_code"] = VarSpec(("time", "latent"), latent_shape, "float32",
                                        {"long_name": "per-time-step latent code z_t", **one})
    for name in ("loss", "val_mse", "mse", "mse_unobserved", "rmse", "lr", "seconds", "cpu_seconds"):
        arrays[name].attrs["coordinates"] = "epoch"
    return arrays


def store_attrs(cfg: ReconConfig, fld: Field, run_id: str, lo: float, hi: float, **extra: Any) -> dict[str, Any]:
    return json_safe({
        "title": f"insr-hpc reconstruction of {fld.variable} ({cfg.network.model}, {cfg.task.name}) run {run_id}",
        "run_id": run_id, "workload": "recon", "model": cfg.network.model, "task": cfg.task.name,
        "source": cfg.data.path, "variable": fld.variable, "source_dims": list(fld.dims),
        "units": fld.units if fld.units is not None else "unknown (no units attribute in the source)",
        # the network's units ↔ physical: the training observations' range
        "normalisation": {"lo": lo, "hi": hi},
        # the metrics' yardstick (the paper's): the true field's range
        "metric_range": dict(zip(("lo", "hi"), metrics.metric_range(fld.values))), "seed": cfg.seed,
        "config": config_to_dict(cfg), "config_yaml": config_to_yaml(cfg),
        "git_commit": git_commit(), "versions": package_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra,
    })


def _plain(obj: Any) -> Any:
    """``obj`` as tensors and plain data only (what ``torch.load(weights_only=True)``
    reads): numpy scalars become Python numbers, numpy arrays tensors."""
    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return type(obj)((k, _plain(v)) for k, v in obj.items())  # dict or OrderedDict
    if isinstance(obj, list | tuple):
        return type(obj)(_plain(v) for v in obj)
    return obj


def _save_checkpoint(path: str, trainer: Trainer) -> None:
    """Tensors and plain data only: read back with ``weights_only=True``, never unpickled."""
    tmp = f"{path}.{os.getpid()}.tmp"
    torch.save(_plain(trainer.state_dict()), tmp)
    os.replace(tmp, path)  # a crash leaves the previous checkpoint whole


def _load_checkpoint(path: str, trainer: Trainer, device: Any, run_id: str) -> bool:
    """Resume ``trainer`` from ``path`` (``weights_only=True``: a checkpoint holding anything
    but tensors and plain data is refused, nothing in it runs). False, with one line naming
    the file, for a checkpoint that does not load: the caller trains again from epoch 1."""
    try:
        trainer.load_state_dict(torch.load(path, map_location=device, weights_only=True))
        return True
    except Exception as exc:  # not a tensors-only checkpoint, truncated, or of another model
        lines = str(exc).splitlines() or [""]
        # torch's advice to retry with weights_only=False is not ours: keep the line naming what was refused
        why = next((ln.strip() for ln in lines if any(k in ln for k in ("GLOBAL", "WeightsUnpickler", "Unsupported"))),
                   lines[0])[:160]
        print(f"{run_id}: checkpoint '{path}' is not a readable tensors-only checkpoint ({type(exc).__name__}: "
              f"{why}): training again from epoch 1", flush=True)
        return False


def run_recon(cfg: ReconConfig, run_dir: str, env: RunEnv, run_id: str = "r000") -> dict[str, Any]:
    """Run (or resume) one reconstruction. Returns the final errors and timings."""
    fld = load_field(cfg.data.path, cfg.data.variable)
    observed = observation_mask(cfg.task.name, cfg.task.ratio, cfg.task.ratio_min, fld.valid, fld.values.shape[0], cfg.task.seed)
    train_mask, val_mask = validation_split(cfg.task.name, observed, cfg.train.validation_fraction(cfg.task.name),
                                            cfg.task.seed)
    folds = ValidationFolds(cfg, val_mask)
    if MODELS.has(cfg.network.model, "classical"):
        return _run_classical(cfg, run_dir, env, run_id, fld, observed, train_mask, val_mask, folds)
    problem = make_problem(fld.values, train_mask, fld.lat, fld.lon, val_mask)
    mlo, mhi = metrics.metric_range(fld.values)
    model_cls = MODELS.get(cfg.network.model)
    base, base_seconds, base_cpu_seconds, base_selection = None, 0.0, 0.0, None
    refit: dict[str, Any] = {}
    if MODELS.has(cfg.network.model, "hybrid"):
        # the interpolant b: with network.refit (the default) of *every* observation, and at
        # each validation point its leave-one-out estimate from all the others (what b is
        # there without that observation: the gate's evidence is out of sample for b as for
        # the network, and is measured against the b the reconstruction is made of); without
        # refit, of the training observations only
        start, cpu_start = time.perf_counter(), time.process_time()
        interpolant = model_cls.base_model(cfg.network)
        on = observed if cfg.network.refit else train_mask
        if hasattr(interpolant, "select"):  # base: auto, chosen by cross-validation over those observations
            base_selection = interpolant.select(fld.values, on, fld.valid, fld.lat, fld.lon,
                                                fixed_positions=cfg.task.name in FIXED_POSITIONS)
        if cfg.network.refit:
            base, held = interpolant.interpolate(fld.values, observed, fld.valid, fld.lat, fld.lon, loo=True)
            base_held = np.where(val_mask, held, base)
        else:
            base = base_held = interpolant.interpolate(fld.values, train_mask, fld.valid, fld.lat, fld.lon)
        base_seconds, base_cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        if not np.isfinite(base[:, fld.valid]).all() or not np.isfinite(base_held[val_mask]).all():
            raise DivergedError(f"{cfg.network.base} produced a non-finite interpolant")
        if cfg.network.refit:
            refit = {"observations": "training + validation", "seconds": base_seconds,
                     "model": base_selection["chosen"]["label"] if base_selection else cfg.network.base,
                     **({"selection": base_selection} if base_selection else {})}

    def new_trainer() -> Trainer:
        tr = Trainer(cfg.network, cfg.train, problem, cfg.seed, env.device, env)
        if base is not None:
            scale = problem.hi - problem.lo
            tr.set_base((base - problem.lo) / scale, cfg.network.max_weight, cfg.network.min_z,
                        val_grid=(base_held - problem.lo) / scale, val_fold=folds.point_fold,
                        n_clusters=folds.n_clusters, min_clusters=cfg.network.min_clusters,
                        folds=cfg.train.cv_folds)
        return tr

    trainer = new_trainer()
    os.makedirs(run_dir, exist_ok=True)
    rd = RunDir(run_dir)
    path = rd.store
    ckpt = rd.checkpoint
    env.barrier()  # e.g. rank 0 clearing the run's outputs for output.overwrite (cli)
    store = reopen_store(path)
    if store is not None and store.attrs.get("complete"):
        return _summary(store)
    if store is None:
        latent = tuple(trainer.codes.shape) if trainer.codes is not None else None
        attrs = store_attrs(cfg, fld, run_id, problem.lo, problem.hi, n_params=trainer.n_params(), lr=trainer.lr,
                            param_layout=param_layout(trainer.model))
        arrays = store_arrays(cfg, fld, observed, val_mask, cfg.train.epochs, trainer.n_params(with_codes=False), latent)
        store = create_store(path, arrays, attrs) if env.is_main else None
        env.barrier()
        store = store or StepStore.open(path)
    elif os.path.exists(ckpt):
        if not _load_checkpoint(ckpt, trainer, env.device, run_id):
            trainer = new_trainer()  # a partly loaded trainer is no start: from scratch
        elif trainer.epoch > store.completed_steps():
            # verification un-committed epochs the checkpoint is past: only training again
            # from the start reproduces them (checkpoints are not kept per epoch)
            print(f"{run_id}: epoch {store.completed_steps() + 1} is not intact in the store but the checkpoint "
                  f"is at epoch {trainer.epoch}: training again from epoch 1", flush=True)
            trainer = new_trainer()
    start = trainer.epoch
    n_batches = -(-fld.values.shape[0] // cfg.train.batch_steps)
    monitor = Monitor(rd.tb, start, start * n_batches, cfg.output.log_every, enabled=env.is_main)
    epochs = cfg.train.epochs
    progress = ProgressLog(run_dir, run_id, epochs, cfg.train.progress_every or cfg.train.eval_every, env.is_main)
    bar = tqdm(total=epochs, initial=start, desc=run_id, unit="epoch", disable=None if env.progress else True, leave=False)
    note = ProgressNote(run_dir, enabled=env.is_main)  # progress.json: the epoch now (status)
    val_history = np.full(epochs, np.nan)
    # the trainer scores in its own units (the training observations' range): convert to
    # the metrics' (the true field's range), as every other MSE of the store
    val_units = ((problem.hi - problem.lo) / (mhi - mlo)) ** 2
    if start:
        val_history[:start] = store.read_records("val_mse", start)
    stopped = None
    try:
        for epoch in range(start + 1, epochs + 1):
            lr = trainer.optimizer.param_groups[0]["lr"]
            cpu_start = time.process_time()
            loss, batch_losses, seconds = trainer.train_epoch()
            cpu = time.process_time() - cpu_start
            monitor.iteration_losses("train_l1", batch_losses, (epoch - 1) * n_batches)
            values = {"loss": loss, "lr": lr, "seconds": seconds, "val_mse": trainer.validation_mse() * val_units}
            if "cpu_seconds" in store:  # stores from before it lack the array
                values["cpu_seconds"] = cpu
            val_history[epoch - 1] = values["val_mse"]
            trainer.observe_validation(values["val_mse"])
            if cfg.train.patience and trainer.best is not None and epoch - trainer.best["epoch"] >= cfg.train.patience:
                stopped = epoch
            last = epoch == epochs or stopped is not None
            evaluated = last or epoch % cfg.train.eval_every == 0
            if evaluated and env.is_main:
                pred = problem.denormalise(trainer.predict())
                if not np.isfinite(pred[:, fld.valid]).all():
                    raise DivergedError(f"non-finite reconstruction at epoch {epoch}")
                values.update(metrics.errors(pred, fld.values, fld.valid, observed, mlo, mhi))
                every = cfg.output.figure_every
                if last or (every and epoch % every == 0):
                    monitor.step_figure(epoch, "maps", field_figure(fld, pred, observed, t=0))
            if env.is_main:
                store.commit_step(epoch - 1, values)
                monitor.step_scalars(epoch, {k if k in METRICS else f"train/{k}": v for k, v in values.items()})
                if last or epoch % cfg.train.checkpoint_every == 0:
                    _save_checkpoint(ckpt, trainer)
                progress.epoch(epoch, values, fld.units, evaluated)
            note(epoch=epoch, of=epochs)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.2e}", **({"mse": f"{values['mse']:.2e}"} if "mse" in values else {}))
            env.check_stop(f"epoch {epoch}", before=lambda: _save_checkpoint(ckpt, trainer) if env.is_main else None)
            if stopped is not None:
                progress.note(f"early stop at epoch {epoch}: no better validation MSE for {cfg.train.patience} epochs")
                break
        env.barrier()
        if not env.is_main:
            return {"rank": env.rank}
        done_epochs = stopped or epochs
        val_history = val_history[:done_epochs]
        if cfg.train.select == "best":
            trainer.use_best()
        held_out = None
        if base is not None:
            # w refused: the interpolant bit for bit (with refit: of every observation, what
            # network.model=classical train.validation=0 returns); else b + w (n − b). The
            # validation figures stay out of sample: at the validation points b is its
            # leave-one-out estimate there (base_held)
            w = trainer.blend_weight
            net = problem.denormalise(trainer.predict(network_only=True))  # also its own errors, below
            pred = base.copy() if not w else base + w * (net - base)
            held_out = base_held.copy() if not w else base_held + w * (net - base_held)
        else:
            pred = problem.denormalise(trainer.predict())
        if not np.isfinite(pred[:, fld.valid]).all():
            raise DivergedError(f"non-finite reconstruction at epoch {done_epochs}")
        pred[:, ~fld.valid] = np.nan  # no data there (land in SST): nothing to reconstruct
        suspect = guard(cfg, pred, fld.valid, fld.values[train_mask], val_history, fld.units)
        final = {"reconstruction": pred, "error": pred - fld.values, "weights": flatten_params(trainer.model)}
        if trainer.codes is not None:
            final["latent_code"] = trainer.codes.detach().cpu().numpy()
        store.write_arrays(final)
        errs = metrics.errors(pred, fld.values, fld.valid, observed, mlo, mhi)
        held_out = pred if held_out is None else held_out
        errs["val_mse"] = metrics.masked_mse(held_out, fld.values, val_mask, mlo, mhi)
        selected = trainer.best["epoch"] if trainer.best is not None and cfg.train.select == "best" else done_epochs
        selects = cfg.train.validation > 0 and (cfg.train.select == "best" or base is not None)
        extra = folds.evidence(held_out, fld, mlo, mhi, selects, base_selection)
        if base is not None:  # the hybrid next to its own parts, on the same observations
            extra |= {"blend_weight": trainer.blend_weight, "blend_choice": trainer.blend_choice,
                      "base": cfg.network.base, "base_seconds": base_seconds, "base_cpu_seconds": base_cpu_seconds,
                     "base_errors": metrics.errors(base, fld.values, fld.valid, observed, mlo, mhi)
                     | {"val_mse": metrics.masked_mse(base_held, fld.values, val_mask, mlo, mhi)},
                     "network_errors": metrics.errors(net, fld.values, fld.valid, observed, mlo, mhi)
                     | {"val_mse": metrics.masked_mse(net, fld.values, val_mask, mlo, mhi)}}
            if base_selection is not None:
                extra |= {"base_selection": base_selection, "chosen_model": base_selection["chosen"]["label"]}
            extra["refit"] = refit
            if refit:
                extra["chosen_model"] = refit["model"]  # the interpolant the reconstruction is made of
        monitor.hparams(hparams(cfg, ("data", "task", "train", "network")), errs)
        if suspect:
            progress.note(f"SUSPECT: {suspect}")
        if extra.get("warning"):
            progress.note(f"WARNING: {extra['warning']}")
        store.finish({"complete": True, "final_errors": errs, "selected_epoch": selected, "stopped_epoch": done_epochs,
                      "suspect": suspect or "",
                      "seconds_per_epoch": float(np.nanmedian(store.read_records("seconds", done_epochs))),
                      "cpu_seconds_per_epoch": (float(np.nanmedian(store.read_records("cpu_seconds", done_epochs)))
                                                if "cpu_seconds" in store else None), **extra})
        return _summary(store)
    finally:
        bar.close()
        monitor.close()


def _run_classical(cfg: ReconConfig, run_dir: str, env: RunEnv, run_id: str, fld: Field, observed: np.ndarray,
                   train_mask: np.ndarray, val_mask: np.ndarray, folds: "ValidationFolds") -> dict[str, Any]:
    """Interpolate the training observations with a classical model: one pass, one "epoch"."""
    if not env.is_main:
        return {"rank": env.rank}  # nothing to share out: rank 0 does it all
    os.makedirs(run_dir, exist_ok=True)
    path = RunDir(run_dir).store
    store = reopen_store(path)
    if store is not None and store.attrs.get("complete"):
        return _summary(store)
    lo, hi = metrics.metric_range(fld.values)
    if store is None:
        store = create_store(path, store_arrays(cfg, fld, observed, val_mask, 1, 0, None),
                             store_attrs(cfg, fld, run_id, lo, hi, n_params=0, lr=0.0))
    model = MODELS.get(cfg.network.model).build(cfg.network)
    start, cpu_start = time.perf_counter(), time.process_time()
    selection = None
    if hasattr(model, "select"):  # network.model=classical: IDW or kriging by cross-validation over the training sensors
        selection = model.select(fld.values, train_mask, fld.valid, fld.lat, fld.lon,
                                 fixed_positions=cfg.task.name in FIXED_POSITIONS)
    pred = model.interpolate(fld.values, train_mask, fld.valid, fld.lat, fld.lon)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    if not np.isfinite(pred[:, fld.valid]).all():
        raise DivergedError(f"{cfg.network.model} produced a non-finite reconstruction")
    errs = metrics.errors(pred, fld.values, fld.valid, observed, lo, hi)
    errs["val_mse"] = metrics.masked_mse(pred, fld.values, val_mask, lo, hi)
    store.commit_step(0, {"loss": np.nan, "lr": np.nan, "seconds": seconds,
                          **({"cpu_seconds": cpu} if "cpu_seconds" in store else {}), **errs})
    store.write_arrays({"reconstruction": pred, "error": pred - fld.values})
    suspect = guard(cfg, pred, fld.valid, fld.values[train_mask], np.array([errs["val_mse"]]), fld.units)
    extra = folds.evidence(pred, fld, lo, hi, False, selection)
    if selection is not None:
        extra["classical_selection"] = selection
        extra["chosen_model"] = selection["chosen"]["label"]
    log = ProgressLog(run_dir, run_id, 1, 1, True)
    log.epoch(1, {"loss": np.nan, "seconds": seconds, **errs}, fld.units, True)
    if extra.get("warning"):
        log.note(f"WARNING: {extra['warning']}")
    store.finish({"complete": True, "final_errors": errs, "selected_epoch": 1, "stopped_epoch": 1,
                  "suspect": suspect or "", "seconds_per_epoch": seconds, "cpu_seconds_per_epoch": cpu, **extra})
    return _summary(store)


def _summary(store: StepStore) -> dict[str, Any]:
    attrs = store.attrs
    final = attrs.get("final_errors") or {}
    out = {k: float(final.get(k, np.nan)) for k in METRICS}
    out["epochs"] = int(store.completed_steps())
    out["selected_epoch"] = attrs.get("selected_epoch")
    out["seconds_per_epoch"] = float(attrs.get("seconds_per_epoch", np.nan))
    out["n_params"] = int(attrs.get("n_params", 0))
    # the hybrid's weight of its network against its interpolant (None: not a hybrid)
    out["blend_weight"] = float(attrs["blend_weight"]) if attrs.get("blend_weight") is not None else None
    if attrs.get("suspect"):
        out["suspect"] = attrs["suspect"]
    # how much independent evidence the selection rested on (absent in stores from before it)
    if attrs.get("validation_clusters") is not None:
        out["validation_clusters"] = int(attrs["validation_clusters"])
        out["thin_validation"] = bool(attrs.get("thin_validation"))
    if attrs.get("warning"):
        out["warning"] = str(attrs["warning"])
    if attrs.get("chosen_model"):
        out["chosen_model"] = str(attrs["chosen_model"])
    return out


class ValidationFolds:
    """The validation observations' independent clusters (sensors on tasks 1–2, lat/lon
    tiles on tasks 3–4) dealt into ``train.cv_folds`` folds, and the evidence a finished
    run records from them (:meth:`evidence`)."""

    def __init__(self, cfg: ReconConfig, val_mask: np.ndarray):
        self.cfg = cfg
        self.mask = val_mask
        cluster, self.n_clusters, self.kind = clusters_of(val_mask, cfg.task.name in FIXED_POSITIONS, cfg.train.cv_tiles)
        fold_of, self.k = deal_folds(self.n_clusters, cfg.train.cv_folds, cfg.task.seed)
        # per validation point, in row-major order (that of make_problem's val_t / val_pix)
        self.point_fold = fold_of[cluster[val_mask]] if self.n_clusters else np.zeros(0, np.int64)

    def evidence(self, pred: np.ndarray, fld: Field, lo: float, hi: float, selects: bool,
                 selection: dict | None = None) -> dict[str, Any]:
        """Store attributes: ``validation_cv`` (clusters, their kind, folds, the mean over
        folds of the kept reconstruction's validation MSE and its standard error,
        normalised as every MSE), ``validation_clusters``, ``thin_validation`` (a
        selection — the epoch, the blend weight, the classical model — rests on fewer
        than ``train.min_clusters`` independent clusters) and ``warning`` (why, or "")."""
        need = self.cfg.train.min_clusters
        cv = {"clusters": self.n_clusters, "cluster_kind": self.kind, "folds": self.k, "mse": None, "mse_se": None}
        if self.n_clusters:
            sq = (pred[self.mask] - fld.values[self.mask]) ** 2 / (hi - lo) ** 2
            mean, se = fold_spread(sq, self.point_fold, self.k)
            cv.update(mse=mean, mse_se=se if np.isfinite(se) else None)
        thin = []
        if selects and self.n_clusters < need:
            thin.append(f"{self.n_clusters} independent validation clusters ({self.kind}s) < train.min_clusters={need}")
        if selection is not None and selection["clusters"] < need:
            thin.append(f"the classical model was chosen by cross-validation over {selection['clusters']} clusters "
                        f"({selection['cluster_kind']}s) < train.min_clusters={need}")
        warning = ("thin validation: " + "; ".join(thin) + ": the selection rests on little evidence") if thin else ""
        return {"validation_cv": cv, "validation_clusters": self.n_clusters, "thin_validation": bool(thin),
                "warning": warning}


@WORKLOADS.register("recon")
class ReconWorkload:
    config_class = ReconConfig
    tagged_sections = TAGGED_SECTIONS
    run = staticmethod(run_recon)
