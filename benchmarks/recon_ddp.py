"""Reconstruction epoch time, 1 process vs 2 data-parallel ranks (torchrun, gloo), on
this machine → the "Reconstruction DDP" section, printed (``--write``: into docs/benchmarks.md).

    python benchmarks/recon_ddp.py --epochs 6

MMGN at the paper's size on A1B task1 5 %, batches of 16 time steps, one thread per
rank; the same spec run alone and under ``torchrun --nproc_per_node 2``. Seconds per
epoch are the store's per-epoch training wall time (median, first epoch dropped).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile

import numpy as np
import zarr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from insr_hpc.store import decode_attrs  # noqa: E402


def _spec(root: str, epochs: int) -> str:
    from insr_hpc.plan import plan_runs

    overrides = [f"output.root={root}", "network.model=mmgn", f"train.epochs={epochs}", f"train.eval_every={epochs}",
                 "output.figure_every=0", "device=cpu"]  # MMGN: the shipped default is the hybrid
    return plan_runs(os.path.join(ROOT, "configs", "reconstruct.yaml"), overrides).specs[0].save()


def _seconds(spec: str) -> tuple[float, float]:
    g = zarr.open_group(os.path.join(os.path.dirname(spec), "store.zarr"), mode="r")
    secs = np.asarray(g["seconds"][:])[1:]
    return float(np.median(secs)), float(decode_attrs(dict(g.attrs))["final_errors"]["mse"])


def main() -> None:
    from benchmarks.report import add_write_option, markdown_table, publish

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=6)
    add_write_option(ap)
    args = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        one = _spec(os.path.join(tmp, "one"), args.epochs)
        subprocess.run([sys.executable, "-m", "insr_hpc.launch.ddp", one], check=True, env=env, capture_output=True)
        two = _spec(os.path.join(tmp, "two"), args.epochs)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                        "127.0.0.1", "--master_port", str(port), "-m", "insr_hpc.launch.ddp", two],
                       check=True, env=env, capture_output=True)
        (s1, m1), (s2, m2) = _seconds(one), _seconds(two)
        rows = [("1 process", f"{s1:.2f}", "1.00", f"{m1:.3e}"), ("2 ranks (gloo)", f"{s2:.2f}", f"{s1 / s2:.2f}", f"{m2:.3e}")]
    body = markdown_table(["ranks", "s/epoch (median)", "speed-up", f"MSE after {args.epochs} epochs"], rows)
    body += (f"\n\nMMGN 566k parameters, A1B task1 5 %, batches of 16 time steps (8 per rank), one thread per rank, "
             f"{args.epochs} epochs (first dropped from the median). The machine has {os.cpu_count()} cores shared with other jobs.")
    publish(args.write, "Reconstruction DDP", f"python benchmarks/recon_ddp.py --epochs {args.epochs}", body)


if __name__ == "__main__":
    main()
