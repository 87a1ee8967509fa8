"""``python -m insr_hpc.launch.worker SPEC.json``: execute one saved RunSpec.

Exit 0 when the run completed, 1 when it failed (the reason is in its run.json)."""

from __future__ import annotations

import sys

from insr_hpc.run import RunSpec, execute


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m insr_hpc.launch.worker SPEC.json", file=sys.stderr)
        return 2
    spec = RunSpec.load(argv[0])
    try:
        execute(spec)
    except Exception as exc:  # recorded in run.json by execute
        print(f"insr-hpc: run {spec.run_id} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
