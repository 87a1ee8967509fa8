"""The reconstruction results table (docs/results.md) from the stores of the product's
own sweep: every run under the given sweep directories, one table per dataset (models ×
tasks), the best network and the best classical baseline per task side by side.

    insr-hpc submit configs/reconstruct_sweep.yaml
    insr-hpc submit configs/reconstruct_sweep.yaml name=reconstruct_sweep_ostia \\
        data.path=sample:ostia_monthly.nc data.variable=surface_temperature
    python benchmarks/recon_table.py runs/reconstruct_sweep runs/reconstruct_sweep_ostia --write

Reads ``run.json`` (state) and each store's attributes (final errors of the kept
weights, epochs, seconds per epoch, parameters) through zarr and prints the table;
it writes docs/results.md only with ``--write``, and FILE with ``--out FILE``.
Hand-written notes below the NOTES marker of the file written are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import zarr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from insr_hpc.store import decode_attrs  # noqa: E402

NOTES = "<!-- notes (written by hand; kept by reruns) -->"
# the project's models (hybrid: kriging + MMGN residual; hybrid_auto: the shipped default, the
# classical model chosen by CV + MMGN residual)
NEURAL = ("hybrid_auto", "mmgn", "siren", "ffn_p", "ffn_g", "resmlp", "hybrid")
CLASSICAL = ("idw", "kriging", "classical")  # classical: IDW or kriging chosen by cross-validation
TASKS = ("task1", "task2", "task3", "task4")
DATASET_NAMES = {"A1B_north_america.nc": "A1B", "ostia_monthly.nc": "OSTIA", "E1_north_america.nc": "E1",
                 "synthetic:bumps_front": "synthetic bumps_front"}


def collect(sweep_dirs: list[str]) -> list[dict]:
    from insr_hpc.analysis.status import find_runs

    rows = []
    for sweep in sweep_dirs:
        for run_dir in find_runs(sweep):
            path = os.path.join(run_dir, "store.zarr")
            if not os.path.exists(os.path.join(path, "zarr.json")):
                continue
            attrs = decode_attrs(dict(zarr.open_group(path, mode="r").attrs))
            if not attrs.get("complete"):
                continue
            with open(os.path.join(run_dir, "run.json"), encoding="utf-8") as fh:
                state = json.load(fh)
            cfg = attrs["config"]
            source = str(attrs.get("source", ""))
            source = source if source.startswith("synthetic:") else os.path.basename(source.split(":")[-1])
            model = attrs["model"]
            if model == "hybrid" and (cfg.get("network") or {}).get("base") == "auto":
                model = "hybrid_auto"
            scale = (cfg.get("network") or {}).get("input_scale")
            if model == "mmgn" and scale is not None and float(scale) != 256.0:  # the paper's size is plain "mmgn"
                model = f"mmgn_s{float(scale):g}"
            rows.append({
                "dataset": DATASET_NAMES.get(source, source), "task": attrs["task"], "model": model,
                "ratio": cfg["task"]["ratio"], "epochs": int(attrs.get("stopped_epoch") or cfg["train"]["epochs"]),
                "selected": attrs.get("selected_epoch"), "state": state.get("state"), "reason": state.get("reason"),
                "n_params": int(attrs.get("n_params", 0)), "s_epoch": float(attrs.get("seconds_per_epoch", float("nan"))),
                "cpu_epoch": attrs.get("cpu_seconds_per_epoch"), "base_cpu_seconds": attrs.get("base_cpu_seconds"),
                **{k: float(v) for k, v in (attrs.get("final_errors") or {}).items()}, "run": os.path.relpath(run_dir, ROOT),
                "units": attrs.get("units", ""), "blend_weight": attrs.get("blend_weight"),
                "base_seconds": attrs.get("base_seconds"), "base": attrs.get("base"),
                "input_scale": (cfg.get("network") or {}).get("input_scale"),
                # cross-validation evidence (absent in stores from before it: shown as "-")
                "warning": attrs.get("warning") or "", "validation_cv": attrs.get("validation_cv"),
                "chosen": attrs.get("chosen_model"), "metric_range": attrs.get("metric_range"),
            })
    return rows


def render(rows: list[dict], command: str) -> str:
    from benchmarks.report import machine

    epochs = sorted({r["epochs"] for r in rows if r["model"] not in CLASSICAL})
    lines = [
        "# Reconstruction results", "",
        f"Produced by `{command}` over the stores of `insr-hpc submit configs/reconstruct_sweep.yaml` (see its header) "
        f"on {machine()}, {time.strftime('%Y-%m-%d')}.", "",
        "Each cell: **MSE over the grid** (normalised by the whole field's min–max, the paper's metric) / MSE on "
        "points never observed / RMSE in the field's units, for the weights kept by validation (tasks 1–2: "
        "`train.validation_sensors` of the sensors held back whole, tasks 3–4: `train.validation` of each step's "
        "observations; `selected` epoch; stores from before 2026-12: 10 % on every task). Sampling ratio 0.05 (tasks 2 and 4: 0.01–0.05 per step), "
        f"seeds 3407, the authors' recipe (summed L1, clip 0.999, AdamW 5e-3, SIREN 1e-4, decay 0.99/epoch, "
        f"batches of 16 steps). Network epochs in this table: {', '.join(map(str, epochs)) or '-'} (per cell: epochs "
        "trained, epoch kept). "
        "Classical models interpolate the same training observations. `hybrid` = an interpolant b "
        "(`network.base`: kriging, idw or auto, the classical model chosen by cross-validation; with "
        "`network.refit`, the default, of every observation, scored at the validation points by its leave-one-out "
        "estimates) + w × (MMGN − b), w fitted on the validation observations (shown per cell; 0 — b exactly — "
        "unless its gain, cross-validated over folds of validation clusters, is above `network.min_z` standard "
        "errors across folds). `hybrid_auto` (base auto, `configs/reconstruct.yaml`: lr decay 0.97) is the "
        "shipped default. `classical` may be `stack(…)`: the average of the two best candidates where the CV "
        "cannot tell them apart. s/epoch: median wall seconds of an epoch's training and, where stored, its CPU "
        "seconds (one thread per run; wall above CPU = the machine was shared). "
        "A run marked ⚠ ended `suspect`; one marked ‡ rests its selection (epoch, blend weight or classical model) "
        "on fewer independent validation clusters than `train.min_clusters` (`thin_validation`). Per cell, where "
        "recorded: `cv` = the kept reconstruction's validation MSE, mean over the folds of independent clusters "
        "(sensors on tasks 1–2, lat/lon tiles on tasks 3–4) ± its standard error across folds, and their count; "
        "`classical` = IDW or kriging chosen by cross-validation (the choice in the cell).", "",
    ]
    for ds in sorted({r["dataset"] for r in rows}):
        found = {(r["model"], r["task"]): r for r in rows if r["dataset"] == ds}
        tasks = [t for t in TASKS if any(tt == t for (_, tt) in found)]
        lines += [f"## {ds}", ""]
        mr = next((r["metric_range"] for r in found.values() if isinstance(r.get("metric_range"), dict)), None)
        if mr:  # the yardstick of the normalised MSEs, and what one means in the field's units
            span = float(mr["hi"]) - float(mr["lo"])
            units = next((r["units"] for r in found.values() if r.get("units")), "")
            lines += [f"Yardstick: MSEs are divided by the squared range of the true field (`metric_range` "
                      f"{float(mr['lo']):.4g}–{float(mr['hi']):.4g} {units}, span {span:.4g}); an MSE m is an RMSE of "
                      f"{span:.4g}·√m {units} (MSE 1e-3 ≙ {span * 1e-3 ** 0.5:.3g} {units}); the RMSE column of each "
                      "cell is in the field's units, independent of the yardstick.", ""]
        lines += ["| model | params | s/epoch wall (CPU) | " + " | ".join(tasks) + " |", "|---" * (3 + len(tasks)) + "|"]
        extra = sorted({m for (m, _) in found if m not in NEURAL and m not in CLASSICAL})
        for model in (*NEURAL[:1], *extra, *NEURAL[1:], *CLASSICAL):
            cells, some = [], [found.get((model, t)) for t in tasks]
            if not any(some):
                continue
            for r in some:
                if r is None:
                    cells.append("(not run)")
                    continue
                mark = " ⚠" if r["state"] == "suspect" else ""
                mark += " ‡" if r.get("warning") else ""
                notes = [f"{r['epochs']} ep, kept {r['selected']}"] if model not in CLASSICAL else []
                if r.get("blend_weight") is not None:
                    notes.append(f"w {r['blend_weight']:.2f}")
                if r.get("chosen"):
                    notes.append(str(r["chosen"]))
                cv = r.get("validation_cv")
                if isinstance(cv, dict) and cv.get("mse") is not None:
                    se = f" ± {cv['mse_se']:.1e}" if cv.get("mse_se") is not None else ""
                    notes.append(f"cv {cv['mse']:.2e}{se}, {cv['clusters']} {cv['cluster_kind']}s")
                ep = f" ({'; '.join(notes)})" if notes else ""
                cells.append(f"{r['mse']:.2e} / {r['mse_unobserved']:.2e} / {r['rmse']:.3g}{ep}{mark}")
            first = next(r for r in some if r)
            params = f"{first['n_params']:,}" if model not in CLASSICAL else "-"
            # wall seconds, CPU seconds beside them where the store has them (the machine is shared)
            cpu = f" ({first['cpu_epoch']:.2f} CPU)" if first.get("cpu_epoch") is not None else ""
            spe = (f"{first['s_epoch']:.2f}{cpu}" if model not in CLASSICAL
                   else f"{first['s_epoch']:.1f}{cpu} s/run")
            if first.get("base_seconds") is not None:  # the hybrid's interpolant, once per run
                bcpu = f" ({first['base_cpu_seconds']:.0f} CPU)" if first.get("base_cpu_seconds") is not None else ""
                spe += f" + {first['base_seconds']:.0f}{bcpu} s {first['base']}"
            lines.append(f"| {model} | {params} | {spe} | " + " | ".join(cells) + " |")
        verdict = []
        for t in tasks:
            nn = [r for (m, tt), r in found.items() if tt == t and m not in CLASSICAL]
            cl = [found[(m, t)] for m in CLASSICAL if (m, t) in found]
            if not nn or not cl:
                verdict.append("-")
                continue
            bn, bc = min(nn, key=lambda r: r["mse"]), min(cl, key=lambda r: r["mse"])
            ratio = bc["mse"] / bn["mse"]
            # a hybrid whose blend weight was refused is its interpolant: equal, not better or worse
            word = "equals" if abs(ratio - 1) < 1e-6 else "beats" if ratio > 1 else "loses to"
            verdict.append(f"{bn['model']} {word} {bc['model']} ({ratio:.2f}×)")
        lines += ["| **best of ours vs best classical** (classical MSE / our MSE) | | | " + " | ".join(verdict) + " |", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweeps", nargs="+", help="sweep directories (output.root/name)")
    ap.add_argument("--out", metavar="FILE", help="write the table to FILE")
    ap.add_argument("--write", action="store_true", help="write the table into docs/results.md (default: print only)")
    args = ap.parse_args()
    rows = collect(args.sweeps)
    if not rows:
        raise SystemExit(f"recon_table: no finished reconstruction store under {', '.join(args.sweeps)}")
    text = render(rows, "python benchmarks/recon_table.py " + " ".join(args.sweeps))
    print(text)
    targets = ([args.out] if args.out else []) + ([os.path.join(ROOT, "docs", "results.md")] if args.write else [])
    for path in targets:
        old = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
        notes = old[old.index(NOTES):] if NOTES in old else ""
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text + "\n" + (("\n" + notes) if notes else ""))
        print(f"recon_table: wrote {path}")
    if not targets:
        print("(printed only: --write puts it into docs/results.md, --out FILE into FILE)")


if __name__ == "__main__":
    main()
