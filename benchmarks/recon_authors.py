"""Our MMGN against the authors' ``MMGNet`` class side by side, in one process: the same
field, observation mask, normalisation, recipe (summed L1, clip 0.999, AdamW 5e-3 /
1e-5, lr × 0.99 per epoch) and batch order, epochs interleaved on one thread, so that
machine load hits both alike. Prints the "MMGN vs the authors' class" section;
``--write`` also puts it into docs/benchmarks.md.

    git clone https://github.com/Xihaier/Continuous-Field-Reconstruction-MMGN /tmp/mmgn
    python benchmarks/recon_authors.py --authors-repo /tmp/mmgn --epochs 200

The authors' code is not shipped: ``--authors-repo`` is a checkout of their repository
(``models/MMGNet_net.py`` is imported from it, nothing else). Our side trains on every
observation and keeps the last weights (``train.validation=0 train.select=last``), as
theirs does.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> None:
    from benchmarks.report import add_write_option

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--authors-repo", required=True)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=3407)
    ap.add_argument("--task", default="task1")
    add_write_option(ap)
    args = ap.parse_args()
    torch.set_num_threads(1)
    sys.path.insert(0, os.path.abspath(args.authors_repo))
    from models.MMGNet_net import MMGNet  # the authors' class, from their checkout

    from benchmarks.report import markdown_table, publish
    from insr_hpc.catalog import build_config
    from insr_hpc.recon.data import load_field
    from insr_hpc.recon.metrics import errors, metric_range
    from insr_hpc.recon.tasks import observation_mask
    from insr_hpc.recon.trainer import Trainer, make_problem

    fld = load_field("sample:A1B_north_america.nc", "air_temperature")
    n_t, h, w = fld.values.shape
    obs = observation_mask(args.task, 0.05, 0.01, fld.valid, n_t, args.seed)
    problem = make_problem(fld.values, obs, fld.lat, fld.lon)
    scale = metric_range(fld.values)  # the paper's yardstick, as the product scores
    cfg = build_config({"workload": "recon", "seed": args.seed, "device": "cpu",
                        "data": {"path": "sample:A1B_north_america.nc", "variable": "air_temperature"},
                        "network": {"model": "mmgn", "input_scale": 256.0},  # the authors' size (the registry default is the PDE's small SIREN)
                        "train": {"epochs": args.epochs, "validation": 0, "select": "last"}})
    ours = Trainer(cfg.network, cfg.train, problem, cfg.seed, torch.device("cpu"))
    # ours as before 2026-12-02: every point's modulation gathered one by one, AdamW's for loop
    before = Trainer(cfg.network, cfg.train, problem, cfg.seed, torch.device("cpu"))
    before._observed_field = lambda steps, idx: before.field(before.obs_pix[idx], before.obs_t[idx])
    before.optimizer = torch.optim.AdamW(before.params, lr=before.lr, weight_decay=cfg.train.weight_decay, fused=False)
    before.scheduler = torch.optim.lr_scheduler.ExponentialLR(before.optimizer, gamma=cfg.train.lr_decay)

    torch.manual_seed(args.seed)
    theirs = MMGNet(2, 256, n_t, 128, "zeros", 1, 5, 256, 1.0, "Gabor")
    opt = torch.optim.AdamW(theirs.parameters(), lr=5e-3, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.99)
    order = torch.Generator().manual_seed(args.seed)  # the same batch order as ours
    grid = torch.as_tensor(problem.grid, dtype=torch.float32)
    off = problem.offsets
    steps_x = [grid[torch.as_tensor(problem.obs_pix[off[t]:off[t + 1]])] for t in range(n_t)]
    steps_y = [torch.as_tensor(problem.obs_val[off[t]:off[t + 1]], dtype=torch.float32)[:, None] for t in range(n_t)]
    l1 = torch.nn.L1Loss(reduction="sum")

    def their_epoch() -> float:
        start = time.perf_counter()
        theirs.train()
        perm = torch.randperm(n_t, generator=order).tolist()
        for k in range(0, n_t, 16):
            idx = perm[k : k + 16]
            x, y = torch.stack([steps_x[t] for t in idx]), torch.stack([steps_y[t] for t in idx])
            loss = l1(theirs(x, idx), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(theirs.parameters(), 0.999)
            opt.step()
        sched.step()
        return time.perf_counter() - start

    @torch.no_grad()
    def their_field() -> np.ndarray:
        theirs.eval()
        out = [theirs(grid[None], [t])[0, :, 0].double().numpy() for t in range(n_t)]
        return np.stack(out).reshape(n_t, h, w)

    secs = {"ours": [], "before": [], "theirs": []}
    rows = []
    for epoch in range(1, args.epochs + 1):
        secs["ours"].append(ours.train_epoch()[2])
        secs["before"].append(before.train_epoch()[2])
        secs["theirs"].append(their_epoch())
        if epoch % args.eval_every == 0 or epoch == args.epochs:
            e_ours = errors(problem.denormalise(ours.predict()), fld.values, fld.valid, obs, *scale)
            e_theirs = errors(problem.denormalise(their_field()), fld.values, fld.valid, obs, *scale)
            e_before = errors(problem.denormalise(before.predict()), fld.values, fld.valid, obs, *scale)
            rows.append((epoch, e_ours["mse"], e_before["mse"], e_theirs["mse"], e_ours["rmse"], e_theirs["rmse"]))
            print(f"epoch {epoch}: mse ours {e_ours['mse']:.3e} before {e_before['mse']:.3e} theirs {e_theirs['mse']:.3e}; "
                  f"s/epoch ours {np.median(secs['ours']):.2f} before {np.median(secs['before']):.2f} "
                  f"theirs {np.median(secs['theirs']):.2f}", flush=True)
    so, sb, st = (np.median(secs[k][1:] or secs[k]) for k in ("ours", "before", "theirs"))
    body = markdown_table(["epoch", "MSE ours", "MSE ours (before)", "MSE authors' MMGNet", "RMSE ours (K)", "RMSE theirs (K)"],
                          [(e, f"{a:.3e}", f"{b:.3e}", f"{c:.3e}", f"{d:.3f}", f"{f:.3f}") for e, a, b, c, d, f in rows])
    n_ours = ours.n_params()
    n_theirs = sum(p.numel() for p in theirs.parameters())
    body += (f"\n\nA1B {args.task} 5 %, seed {args.seed}, batches of 16 time steps, epochs interleaved on one thread. "
             f"Seconds per epoch (median, first epoch dropped): ours {so:.2f}, theirs {st:.2f} "
             f"(ours = {so / st:.2f}× theirs); ours before 2026-12-02 (per-point gather of the modulation, "
             f"AdamW's loop) {sb:.2f} ({sb / st:.2f}× theirs). Parameters: ours {n_ours:,}, theirs {n_theirs:,}. "
             f"Load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.")
    publish(args.write, "MMGN vs the authors' class", f"python benchmarks/recon_authors.py --authors-repo CHECKOUT --epochs {args.epochs}", body)


if __name__ == "__main__":
    main()
