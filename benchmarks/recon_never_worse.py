"""Is the shipped reconstruction default ever worse than interpolation? The default
(configs/reconstruct.yaml: the hybrid on base auto) against the classical baselines on
several fields × tasks, through the product's own sweeps (docs/results.md, "Never worse
than interpolation"):

    python benchmarks/recon_never_worse.py --epochs 20 --root runs/never_worse [--workers 1] [--out FILE]
    python benchmarks/recon_never_worse.py --root runs/never_worse --fields A1B,OSTIA \
        --default-dirs runs/recon200_default_a1b runs/recon200_default_ostia   # the default's own 200-epoch runs

Three sweeps over fields × tasks, each a plain ``insr-hpc submit`` (a rerun resumes them):

* ``default``: configs/reconstruct.yaml as shipped, ``train.epochs`` = ``--epochs``;
* ``same``: ``classical`` (IDW or kriging chosen by cross-validation), kriging ν 1.5 and
  IDW (power 2, 8 neighbours) interpolating the training observations, as every model of
  the sweep does (the default holds validation observations back);
* ``every``: the same three interpolating *every* observation (``train.validation=0``):
  what a user who simply interpolates all their data gets — the strict yardstick.

The table gives per cell the default's grid MSE (the paper's metric: normalised by the
true field's squared range, ``metric_range``) and RMSE in the field's units, what the
default's reconstruction is (w refused → its base; w > 0 over its base), the best of
each classical trio, the ratios default / best (< 1: the default is better), and the
default's wall and CPU seconds (base selection + interpolation + every epoch).
It prints the table; ``--write`` also puts it into docs/benchmarks.md, ``--out FILE`` into
FILE (docs/results.md's notes are edited by hand).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import zarr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from benchmarks.report import add_write_option, publish  # noqa: E402
from insr_hpc.store import decode_attrs  # noqa: E402

FIELDS = {
    "A1B": ("sample:A1B_north_america.nc", "air_temperature"),
    "OSTIA": ("sample:ostia_monthly.nc", "surface_temperature"),
    "E1": ("sample:E1_north_america.nc", "air_temperature"),
    "synthetic": ("synthetic:bumps_front", "temperature"),
}
CLASSICAL = "[{model: classical}, {model: kriging, nu: 1.5}, {model: idw, neighbours: 8, power: 2.0}]"


def submit(name: str, root: str, fields: list[str], tasks: list[str], workers: int, *extra: str) -> str:
    data = ", ".join(f'{{path: "{FIELDS[f][0]}", variable: {FIELDS[f][1]}}}' for f in fields)
    cmd = [sys.executable, "-m", "insr_hpc", "submit", os.path.join(ROOT, "configs", "reconstruct.yaml"),
           f"name={name}", f"output.root={root}", f"launch.workers={workers}", "launch.threads_per_job=1",
           f"sweep.grid.task.name=[{','.join(tasks)}]", f"sweep.grid.data=[{data}]",
           f"sweep.labels.data=[{','.join(fields)}]", *extra]
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return os.path.join(root, name)


def collect(sweep: str) -> dict[tuple, dict]:
    from insr_hpc.analysis.status import find_runs

    out = {}
    for run_dir in find_runs(sweep):
        path = os.path.join(run_dir, "store.zarr")
        if not os.path.exists(os.path.join(path, "zarr.json")):
            continue
        group = zarr.open_group(path, mode="r")
        attrs = decode_attrs(dict(group.attrs))
        if not attrs.get("complete"):
            continue
        cfg = attrs["config"]
        field = next(f for f, (p, _) in FIELDS.items() if p == cfg["data"]["path"])
        net = cfg["network"]
        label = {"hybrid": "default", "classical": "classical", "kriging": "kriging", "idw": "idw"}[net["model"]]
        n = int(attrs.get("stopped_epoch") or 1)
        wall = float(np.nansum(group["seconds"][:n])) + float(attrs.get("base_seconds") or 0.0)
        cpu = (float(np.nansum(group["cpu_seconds"][:n])) + float(attrs.get("base_cpu_seconds") or 0.0)
               if "cpu_seconds" in group else float("nan"))
        out[(field, attrs["task"], label)] = {
            "mse": float(attrs["final_errors"]["mse"]), "rmse": float(attrs["final_errors"]["rmse"]),
            "units": attrs.get("units", ""), "w": attrs.get("blend_weight"), "chosen": attrs.get("chosen_model"),
            "warning": attrs.get("warning") or "", "wall": wall, "cpu": cpu,
            "z": (attrs.get("blend_choice") or {}).get("z"),
        }
    return out


def best(rows: dict, field: str, task: str) -> tuple[str, dict] | None:
    found = [(m, rows[(field, task, m)]) for m in ("classical", "kriging", "idw") if (field, task, m) in rows]
    return min(found, key=lambda kv: kv[1]["mse"]) if found else None


def table(default: dict, same: dict, every: dict, fields: list[str], tasks: list[str]) -> str:
    lines = ["| field | task | **default** MSE (RMSE) | what it is | best classical, same training obs.: MSE "
             "(RMSE) | best classical, every obs.: MSE (RMSE) | **ratio** vs same obs. | **ratio** vs every obs. "
             "| default wall s (CPU s) |", "|---" * 9 + "|"]
    for f in fields:
        for t in tasks:
            d = default.get((f, t, "default"))
            if d is None:
                lines.append(f"| {f} | {t} | (not run) |" + " |" * 6)
                continue
            w = d["w"] or 0.0
            what = (f"w refused → {d['chosen']} of every obs." if not w
                    else f"w {w:.2f} (z {d['z']:.2g}) over {d['chosen']}" if d["z"] is not None
                    else f"w {w:.2f} over {d['chosen']}")
            what += " ‡" if d["warning"] else ""
            cells = []
            for rows in (same, every):
                b = best(rows, f, t)
                cells.append((f"{b[0]} {b[1]['mse']:.3e} ({b[1]['rmse']:.3g} {b[1]['units']})", d["mse"] / b[1]["mse"])
                             if b else ("(not run)", float("nan")))
            lines.append(f"| {f} | {t} | {d['mse']:.3e} ({d['rmse']:.3g} {d['units']}) | {what} | {cells[0][0]} | "
                         f"{cells[1][0]} | **{cells[0][1]:.4f}** | **{cells[1][1]:.4f}** | "
                         f"{d['wall']:.0f} ({d['cpu']:.0f}) |")
    return "\n".join(lines)


def classical_table(same: dict, every: dict, fields: list[str], tasks: list[str]) -> str:
    """Every classical run: MSE, and the CV's choice for ``classical``."""
    lines = ["| field | task | classical (CV) | kriging ν 1.5 | IDW p 2, k 8 | classical (CV), every obs. | "
             "kriging, every obs. | IDW, every obs. |", "|---" * 8 + "|"]

    def cell(rows, key):
        r = rows.get(key)
        if r is None:
            return "-"
        return f"{r['mse']:.3e}" + (f" {r['chosen']}" if key[2] == "classical" and r.get("chosen") else "")

    for f in fields:
        for t in tasks:
            parts = [cell(rows, (f, t, m)) for rows in (same, every) for m in ("classical", "kriging", "idw")]
            lines.append(f"| {f} | {t} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=20, help="the default's training epochs (the paper: 200)")
    ap.add_argument("--root", default=os.path.join(ROOT, "runs", "never_worse"), help="output.root of the sweeps")
    ap.add_argument("--fields", default=",".join(FIELDS), help=f"comma-separated, of {', '.join(FIELDS)}")
    ap.add_argument("--tasks", default="task1,task2,task3,task4")
    ap.add_argument("--workers", type=int, default=1, help="launch.workers of each sweep (one thread per run)")
    ap.add_argument("--collect-only", action="store_true", help="submit nothing; tabulate the stores there")
    ap.add_argument("--default-dirs", metavar="DIR", nargs="+",
                    help="take the default's runs from these sweeps (e.g. the 200-epoch ones of "
                         "`insr-hpc submit configs/reconstruct.yaml …`) instead of submitting it")
    ap.add_argument("--out", metavar="FILE", help="write the table to FILE")
    add_write_option(ap)
    args = ap.parse_args()
    fields, tasks = args.fields.split(","), args.tasks.split(",")
    for f in fields:
        if f not in FIELDS:
            ap.error(f"--fields: unknown field '{f}' (known: {', '.join(FIELDS)})")
    names = {"default": "nw_default", "same": "nw_classical_same", "every": "nw_classical_every"}
    if not args.collect_only and not args.default_dirs:
        submit(names["default"], args.root, fields, tasks, args.workers, f"train.epochs={args.epochs}")
    if not args.collect_only:
        grid = [f"sweep.grid.network={CLASSICAL}", "sweep.labels.network=[classical,kriging,idw]"]
        submit(names["same"], args.root, fields, tasks, args.workers, *grid)
        submit(names["every"], args.root, fields, tasks, args.workers, *grid, "train.validation=0",
               "train.select=last")
    rows = {k: collect(os.path.join(args.root, v)) for k, v in names.items()}
    if args.default_dirs:
        rows["default"] = {}
        for d in args.default_dirs:
            rows["default"].update(collect(d))
    text = table(rows["default"], rows["same"], rows["every"], fields, tasks)
    text += "\n\n" + classical_table(rows["same"], rows["every"], fields, tasks)
    command = "python benchmarks/recon_never_worse.py " + " ".join(sys.argv[1:])
    publish(args.write, "Reconstruction: never worse than interpolation", command, text)
    print(json.dumps({"epochs": args.epochs if not args.default_dirs else "from " + ", ".join(args.default_dirs),
                      "root": args.root}))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
