"""How well does the classical selector choose? Every candidate of ``network.model:
classical`` interpolates every observation of a field × task, and its grid MSE is the
truth the selection is judged by; against it, what each selection rule picks
(docs/recon.md, "The classical model chosen by data"):

    OMP_NUM_THREADS=1 python benchmarks/recon_classical_choice.py --cells A1B:task1,E1:task2 [--out FILE]

Rules: ``kfold`` (5 folds, the best single; ``stack: false``), ``loo`` (leave-one-out, the
best single), ``default`` (5 folds, the two best averaged when the CV cannot tell them
apart: ``stack: true``, ``stack_z`` 1). Per rule the pick and its grid MSE over the best
candidate's (1 = the oracle; < 1: better than every single candidate), the paired z of
the two best, and the CPU seconds of the selection. 5 %, ``task.seed`` 3407, the
selector's default 24 time steps. ``--kriging-nu 0.5,1.5,2.5,inf`` adds the smoother kernels
the default leaves out (and shows why).
"""

from __future__ import annotations

import argparse
import os
import sys
import time


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.recon_never_worse import FIELDS  # noqa: E402
from benchmarks.report import add_write_option, publish  # noqa: E402


def run_cell(field: str, task: str, nus: list[float]) -> dict:
    from insr_hpc.fields.classical import ClassicalSelector, _build
    from insr_hpc.fields.params import ClassicalParams
    from insr_hpc.recon import metrics
    from insr_hpc.recon.data import load_field
    from insr_hpc.recon.tasks import FIXED_POSITIONS, observation_mask

    fld = load_field(*FIELDS[field])
    obs = observation_mask(task, 0.05, 0.01, fld.valid, fld.values.shape[0], 3407)
    lo, hi = metrics.metric_range(fld.values)
    fixed = task in FIXED_POSITIONS
    grid_cache: dict[str, float] = {}

    def grid_mse(sel: ClassicalSelector) -> float:
        pred = sel.chosen.interpolate(fld.values, obs, fld.valid, fld.lat, fld.lon)
        return float(metrics.errors(pred, fld.values, fld.valid, obs, lo, hi)["mse"])

    rules = {"kfold": ClassicalParams(stack=False, kriging_nu=nus),
             "loo": ClassicalParams(cv="loo", stack=False, kriging_nu=nus), "default": ClassicalParams(kriging_nu=nus)}
    picks = {}
    for name, params in rules.items():
        sel = ClassicalSelector(params)
        cpu = time.process_time()
        found = sel.select(fld.values, obs, fld.valid, fld.lat, fld.lon, fixed_positions=fixed)
        cpu = time.process_time() - cpu
        label = found["chosen"]["label"]
        if label not in grid_cache:
            grid_cache[label] = grid_mse(sel)
        z = found["candidates"][-1].get("z") if name == "default" else None
        picks[name] = {"label": label, "mse": grid_cache[label], "cpu": cpu, "z": z, "found": found}
    # the oracle: every single candidate on the grid
    params = ClassicalParams()
    for cand in picks["kfold"]["found"]["candidates"]:
        if cand["label"] not in grid_cache:
            grid_cache[cand["label"]] = float(metrics.errors(
                _build(cand, params).interpolate(fld.values, obs, fld.valid, fld.lat, fld.lon),
                fld.values, fld.valid, obs, lo, hi)["mse"])
    singles = {c["label"]: grid_cache[c["label"]] for c in picks["kfold"]["found"]["candidates"]}
    oracle = min(singles, key=singles.get)
    kernels = {c["label"]: singles[c["label"]] / singles[oracle] for c in picks["kfold"]["found"]["candidates"]
               if c["model"] == "kriging"}
    return {"cell": f"{field} {task}", "oracle": oracle, "oracle_mse": singles[oracle], "picks": picks,
            "kernels": kernels}


def table(rows: list[dict]) -> str:
    lines = ["| cell | best single on the grid (MSE) | 5-fold pick | ratio | leave-one-out pick | ratio | default "
             "(5-fold, average if z < 1) | z of the two best | ratio | CPU s: 5-fold / loo / default | every kriging "
             "kernel's ratio |", "|---" * 11 + "|"]
    for r in rows:
        p, best = r["picks"], r["oracle_mse"]
        z = p["default"]["z"]
        lines.append(
            f"| {r['cell']} | {r['oracle']} ({best:.3e}) | {p['kfold']['label']} | {p['kfold']['mse'] / best:.3f} | "
            f"{p['loo']['label']} | {p['loo']['mse'] / best:.3f} | {p['default']['label']} | "
            f"{'-' if z is None else f'{z:.2f}'} | **{p['default']['mse'] / best:.3f}** | "
            f"{p['kfold']['cpu']:.1f} / {p['loo']['cpu']:.1f} / {p['default']['cpu']:.1f} | "
            + ", ".join(f"{k.replace('kriging(nu=', 'ν ').rstrip(')')} {v:.3g}" for k, v in r["kernels"].items()) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", default="A1B:task1,A1B:task2,A1B:task3,OSTIA:task1,OSTIA:task2,E1:task1,E1:task2,E1:task3",
                    help="comma-separated FIELD:TASK")
    ap.add_argument("--kriging-nu", default="0.5,1.5",
                    help="the kriging candidates' Matérn ν, comma-separated (inf: squared exponential); "
                         "the selector's default: 0.5,1.5")
    ap.add_argument("--out", metavar="FILE", help="write the table to FILE")
    add_write_option(ap)
    args = ap.parse_args()
    nus = [float(v) for v in args.kriging_nu.split(",")]
    rows = []
    for cell in args.cells.split(","):
        field, task = cell.split(":")
        if field not in FIELDS:
            ap.error(f"--cells: unknown field '{field}' (known: {', '.join(FIELDS)})")
        rows.append(run_cell(field, task, nus))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    text = table(rows)
    command = "python benchmarks/recon_classical_choice.py " + " ".join(sys.argv[1:])
    publish(args.write, "Reconstruction: the classical selector against every candidate", command, text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
