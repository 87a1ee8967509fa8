"""``python -m insr_hpc.launch.worker SPEC.json [SPEC.json …]``: execute one saved
RunSpec, or several as one pack (``launch.pack``: :func:`insr_hpc.run.execute_pack`;
each run's outcome is in its run.json, and the exit code is 0 unless stopped).

Exit codes: 0 the run ended (done or suspect), 1 it failed (the reason is in its
run.json), 2 a spec.json is missing or not a spec (nothing written), 3 another live process holds the run's lock (nothing was changed),
143 / 130 it was stopped by SIGTERM / SIGINT at a step boundary (state ``pending``).

SIGTERM and SIGINT stop the run after the step being computed (its store then holds
every step before the signal); the local backend sends SIGTERM to its workers when
``submit`` itself is stopped, and kills them after ``launch.grace_s``. The worker also
asks the kernel for SIGTERM when the process that started it dies, so no worker
outlives its ``submit``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

from insr_hpc.errors import InsrError
from insr_hpc.rundir import EXIT_LOCKED, RunLocked, RunSpec
from insr_hpc.run import execute, execute_pack
from insr_hpc.runtime import STOP, Interrupted, install_stop_handlers

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """SIGTERM to this process when its parent dies (Linux ``prctl``; elsewhere nothing)."""
    parent = int(os.environ.get("INSR_HPC_PARENT_PID", "0") or 0)
    if not parent or not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: python -m insr_hpc.launch.worker SPEC.json [SPEC.json …]", file=sys.stderr)
        return 2
    install_stop_handlers()
    die_with_parent()
    try:
        specs = [RunSpec.load(path) for path in argv]
    except InsrError as exc:  # a missing or damaged spec.json: nothing to run, nothing written
        print(f"insr-hpc: error: {exc}", file=sys.stderr)
        return 2
    if len(specs) > 1:
        try:
            execute_pack(specs)
        except (Interrupted, KeyboardInterrupt) as exc:
            print(f"insr-hpc: pack of {len(specs)} runs {exc or 'interrupted'}; submit again to resume",
                  file=sys.stderr)
            return 128 + (STOP.signum or signal.SIGINT)
        return 0
    spec = specs[0]
    try:
        execute(spec, watch_cancel=True)
    except RunLocked as exc:
        print(f"insr-hpc: run {spec.run_id} skipped: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except (Interrupted, KeyboardInterrupt) as exc:
        print(f"insr-hpc: run {spec.run_id} {exc or 'interrupted'}; submit again to resume", file=sys.stderr)
        return 128 + (STOP.signum or signal.SIGINT)
    except Exception as exc:  # recorded in run.json by execute
        print(f"insr-hpc: run {spec.run_id} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
