"""The driver of a detached Ray sweep: ``python -m insr_hpc.launch.ray_driver JOB.json``.

The entrypoint of the Ray job that ``insr-hpc submit --backend ray --no-wait`` hands to
the cluster's job server; it runs on the cluster (Ray sets ``RAY_ADDRESS``), starts one
task (or gang) per run of ``JOB.json`` exactly as an attached submit would, waits for
them, and exits 0 when every run is done (1 otherwise). run.json keeps the Ray job id.
"""

from __future__ import annotations

import json
import os
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m insr_hpc.launch.ray_driver JOB.json", file=sys.stderr)
        return 2
    import ray

    from insr_hpc.errors import InsrError
    from insr_hpc.launch.ray import RayBackend
    from insr_hpc.run import RunSpec, spec_config

    with open(argv[0], encoding="utf-8") as fh:
        job = json.load(fh)
    try:
        specs = [RunSpec.load(path) for path in job["runs"]]
    except InsrError as exc:
        print(f"insr-hpc: error: {exc}", file=sys.stderr)
        return 2
    if not specs:
        return 0
    backend = RayBackend(spec_config(specs[0]).launch)
    ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), log_to_driver=False, configure_logging=False)
    try:
        results = backend.run_specs(ray, specs, progress=True, ray_job=job["ray_job"])
    finally:
        ray.shutdown()
    return 0 if all(state == "done" for state in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
