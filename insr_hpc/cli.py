# PYTHON_ARGCOMPLETE_OK
"""``insr-hpc``: run, submit, show, status, cancel, report, render, verify.

Exit codes: 0 every run succeeded; 1 some run failed; 2 bad input (one line on
stderr starting ``insr-hpc: error:``, nothing created or overwritten).

Start-up is kept short: this module imports only the standard library and
``insr_hpc.errors``; each command imports what it needs. ``--help``, ``--version``,
every bad-input error, ``show``, ``submit --dry-run``, ``status``, ``cancel`` and
``verify`` never import torch (tests/test_cli_fast.py; the config registries answer from
their declarations, benchmarks/cli_latency.py measures it).
"""

from __future__ import annotations

import argparse
import os
import sys

from insr_hpc.errors import InsrError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, as for every other bad input
        raise InsrError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="insr-hpc", description="INSR PDE solving and field reconstruction, local to cluster.")
    p.add_argument("--version", action="store_true", help="print the package version (and git commit) and exit")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run one job in this process")
    run.add_argument("config")
    run.add_argument("overrides", nargs="*", help="key=value, e.g. time.dt=0.1")
    run.add_argument("--index", type=int, default=None, help="which sweep point to run (default: the only one)")

    submit = sub.add_parser("submit", help="expand the sweep and run every job on a backend")
    submit.add_argument("config")
    submit.add_argument("overrides", nargs="*", help="key=value, e.g. time.dt=0.1")
    submit.add_argument("--backend", default=None, help="local | ray | slurm (default: launch.backend)")
    submit.add_argument("--dry-run", action="store_true", help="print the runs and exit")
    submit.add_argument(
        "--no-wait", action="store_true", help="slurm, ray: return once the runs are queued on the cluster (follow with `insr-hpc status`)"
    )

    show = sub.add_parser("show", help="print the resolved, validated config of one sweep point as YAML")
    show.add_argument("config")
    show.add_argument("overrides", nargs="*", help="key=value, e.g. time.dt=0.1")
    show.add_argument("--index", type=int, default=None, help="which sweep point (default: the only one)")

    status = sub.add_parser("status", help="state and progress of every run under DIR")
    status.add_argument("dir")
    status.add_argument("--json", action="store_true",
                        help="JSON Lines: one object per run (keys: docs/cluster.md, 'insr-hpc status --json')")
    status.add_argument("--watch", type=float, default=None, metavar="SECONDS",
                        help="print again every SECONDS until every run is final (done, suspect, failed, cancelled, "
                             "unknown) or Ctrl-C")

    cancel = sub.add_parser("cancel", help="cancel the unfinished runs under DIR through their backend")
    cancel.add_argument("dir")

    report = sub.add_parser("report", help="sweep dataset, summary table and figures of every run under DIR")
    report.add_argument("dir")
    report.add_argument("--no-figures", action="store_true", help="only sweep.zarr, summary.csv and summary.md")

    verify = sub.add_parser("verify", help="check every chunk and committed step of the stores at or under PATH")
    verify.add_argument("path", help="a store.zarr, a run directory or a sweep directory")

    render = sub.add_parser("render", help="evaluate a stored network on a grid of any resolution; draw or export a "
                                           "mesh body's deformed surface")
    render.add_argument("store", help="a run's store.zarr")
    render.add_argument("--step", required=True,
                        help="committed step (PDE) or time index (reconstruction); mesh bodies: one or more steps, "
                             "comma-separated (one panel each in a .png)")
    render.add_argument("--resolution", type=int, default=None,
                        help="grid points per dimension (required for a grid; unused for a mesh body's .png / .vtu)")
    render.add_argument("--out", required=True,
                        help="FILE.zarr (xarray store), FILE.png (figure) or, for a mesh body, FILE.vtu (ParaView, "
                             "the deformed boundary surface through meshio)")
    return p


def _backend(name: str, launch_cfg):
    from insr_hpc.launch import BACKENDS

    return BACKENDS.get(name)(launch_cfg)


def _pick(plan, config: str, index: int | None, other: str) -> int:
    """The sweep point ``--index`` names (default: the only one); else one line, exit 2."""
    n = len(plan.specs)
    if index is None and n > 1:
        raise InsrError(f"{config}: the sweep has {n} runs; pick one with --index 0..{n - 1}{other}")
    index = index or 0
    if not 0 <= index < n:
        raise InsrError(f"--index: expected 0..{n - 1}, got {index}")
    return index


def cmd_run(args) -> int:
    from insr_hpc.plan import plan_runs

    plan = plan_runs(args.config, args.overrides)
    index = _pick(plan, args.config, args.index, " or use submit")
    from insr_hpc.run import RunDir, admit, execute  # torch: after every check of the input
    from insr_hpc.rundir import RunLocked
    from insr_hpc.runtime import STOP, Interrupted, install_stop_handlers

    spec = plan.specs[index]
    cfg = plan.configs[index]
    rd = RunDir(spec.run_dir)
    # Under torchrun / srun / mpiexec with several ranks: join their process group (DDP).
    from insr_hpc.launch.ddp import env_from_launcher, shutdown

    env = env_from_launcher(cfg.device, cfg.launch.ddp.backend)
    main_rank = env is None or env.is_main
    if main_rank:  # other ranks wait at the run's first barrier
        busy = admit([spec], backend=None).busy
        if busy:
            raise InsrError(f"run {spec.run_id} is being computed by {_holder(busy[spec.run_id])}; "
                            "wait for it or cancel it")
    restore = install_stop_handlers(announce=main_rank and sys.stderr.isatty())
    try:
        summary = execute(spec, env=env)
    except RunLocked as exc:
        raise InsrError(f"run {spec.run_id} is being computed by {_holder(exc.holder)}; wait for it or cancel it") from None
    except InsrError:
        raise
    except (Interrupted, KeyboardInterrupt) as exc:
        print(f"insr-hpc: run {spec.run_id} {exc or 'interrupted'}: state pending; run again to resume", file=sys.stderr)
        return 128 + (STOP.signum or 2)
    except Exception as exc:
        print(f"insr-hpc: run {spec.run_id} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        restore()
        shutdown()
    if not main_rank:
        return 0
    state = rd.read_state()
    print(f"{spec.run_id}: {state.get('state')}, {summary}")
    print(f"store: {rd.store}")
    return 0


def cmd_show(args) -> int:
    """The resolved config of one sweep point, validated as ``run`` would (Hydra's
    ``--cfg job``): YAML on stdout, nothing written."""
    import yaml

    from insr_hpc.plan import plan_runs

    plan = plan_runs(args.config, args.overrides)
    spec = plan.specs[_pick(plan, args.config, args.index, "")]
    print(f"# {spec.run_id}: {spec.run_dir}" + (f" ({', '.join(f'{k}={v}' for k, v in spec.overrides.items())})"
                                                  if spec.overrides else ""))
    sys.stdout.write(yaml.safe_dump(_plain(spec.config), sort_keys=False, allow_unicode=True, width=1 << 16))
    return 0


def _plain(value):
    """``value`` with tuples as lists (yaml.safe_dump writes plain data only)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def version() -> str:
    """``insr-hpc VERSION`` (the installed distribution's, else the package's) and, in a
    git checkout, `` (git COMMIT)``; no torch, at most one short ``git`` call."""
    from importlib import metadata

    try:
        ver = metadata.version("insr-hpc")
    except metadata.PackageNotFoundError:
        import insr_hpc

        ver = insr_hpc.__version__
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    commit = ""
    if os.path.exists(os.path.join(root, ".git")):
        import subprocess

        try:
            out = subprocess.run(["git", "-C", root, "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                 text=True, timeout=5)
            if out.returncode == 0 and out.stdout.strip():
                dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                                       capture_output=True, text=True, timeout=5)
                commit = f" (git {out.stdout.strip()}{'-dirty' if dirty.stdout.strip() else ''})"
        except (OSError, subprocess.SubprocessError):
            pass
    return f"insr-hpc {ver}{commit}"


def _holder(holder: dict) -> str:
    from insr_hpc.rundir import describe_holder

    return f"{describe_holder(holder)} (lock file run.lock)"


def cmd_submit(args) -> int:
    from insr_hpc.analysis.status import format_table, run_status
    from insr_hpc.config.load import announce
    from insr_hpc.launch.base import SubmitInterrupted
    from insr_hpc.launch.packing import check_packing, make_packs
    from insr_hpc.plan import plan_runs, preview

    notes: list[str] = []  # said once everything is checked: a refused submit prints only its error
    plan = plan_runs(args.config, args.overrides, notes=notes)
    backend_name = args.backend or plan.launch.backend
    backend = _backend(backend_name, plan.launch)
    check_packing(plan.specs, plan.configs, backend_name)  # --backend may differ from the config's
    backend.available(detach=args.no_wait)  # refused before anything is written
    announce(notes)
    if args.dry_run:
        packs = f" in {len(make_packs(plan.specs, plan.launch.pack))} pack(s) of at most {plan.launch.pack}" \
            if plan.launch.pack > 1 else ""
        print(f"{len(plan.specs)} run(s) on backend '{backend_name}'{packs} under {plan.sweep_dir}")
        conflicts = []
        for spec in plan.specs:
            values = ", ".join(f"{k}={v}" for k, v in spec.overrides.items())
            what = preview(spec)
            if what.startswith("conflict"):
                conflicts.append(spec.run_id)
            print(f"  {spec.run_id}  {what}" + (f"  ({values})" if values else ""))
        if conflicts:
            raise InsrError(f"{len(conflicts)} run(s) conflict with their stores ({', '.join(conflicts[:5])}"
                            f"{' …' if len(conflicts) > 5 else ''}); use another output.root or output.overwrite=true")
        return 0
    from insr_hpc.run import admit  # torch: not needed for a dry run

    verdict = admit(plan.specs, backend_name)  # refusals first: a refused submit changes nothing on disk
    for run_id, holder in verdict.busy.items():
        print(f"{run_id}: skipped: being computed by {_holder(holder)}")
    if verdict.done:
        print(f"{len(verdict.done)} run(s) already done, skipped")
    todo = verdict.todo
    if args.no_wait:
        backend.submit(todo, plan.sweep_dir, progress=True, wait=False)
        print(f"queued {len(todo)} run(s); follow with: insr-hpc status {plan.sweep_dir}")
        return 0
    try:
        results = backend.submit(todo, plan.sweep_dir, progress=True) if todo else {}
    except SubmitInterrupted as stop:
        print(format_table([run_status(s.run_dir) for s in plan.specs]))
        print(f"insr-hpc: submit stopped by {signal_name(stop.signum)}: unfinished runs are pending; "
              f"submit again to resume them", file=sys.stderr)
        return 128 + stop.signum
    print(format_table([run_status(s.run_dir) for s in plan.specs]))
    failed = [rid for rid, st in results.items() if st not in ("done", "skipped")]
    return 1 if failed else 0


def signal_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name


def cmd_status(args) -> int:
    import json
    import time

    from insr_hpc.analysis.status import as_record, find_runs, format_table, is_final, run_status

    if not os.path.isdir(args.dir):
        raise InsrError(f"status: '{args.dir}' is not a directory")
    if args.watch is not None and not args.watch > 0:
        raise InsrError(f"status: --watch takes a number of seconds > 0, got {args.watch:g}")
    tty = sys.stdout.isatty()
    rounds = 0
    states: list[dict] = []
    try:
        while True:
            runs = find_runs(args.dir)
            if not runs:
                raise InsrError(f"status: no runs under '{args.dir}' (expected directories holding run.json, "
                                "spec.json or store.zarr)")
            states = [run_status(r, args.dir) for r in runs]
            _add_job_states(states)
            if args.json:  # JSON Lines, also when watching (each round appends one line per run)
                text = "\n".join(json.dumps(as_record(st), default=str) for st in states)
            else:
                text = format_table(states)
                if args.watch is not None:
                    head = f"insr-hpc status {args.dir}  {time.strftime('%Y-%m-%d %H:%M:%S')}  (every {args.watch:g} s)"
                    if tty:
                        text = "\033[H\033[2J" + head + "\n" + text  # a terminal: the screen redrawn
                    else:
                        text = ("\n" if rounds else "") + f"--- {head}\n" + text  # a file: appended
            print(text, flush=True)
            rounds += 1
            if args.watch is None or all(is_final(st) for st in states):
                break
            time.sleep(args.watch)
    except KeyboardInterrupt:
        pass
    return 1 if any(s.get("state") in ("failed", "unknown") for s in states) else 0


def _add_job_states(states: list[dict]) -> None:
    """Ask each backend that queues jobs (slurm, ray) for its live job state:
    ``job_state`` in each dict; a run whose job has ended without recording an end is
    shown ``failed``, with the backend's why (nothing is written). The launch layer (it
    imports torch) is imported only when some run has a job on a backend other than
    local (local's job id is a pid, checked by run_status)."""
    live_states = [st for st in states if st.get("job_id") and st.get("backend") not in (None, "local")]
    if not live_states:
        return
    from insr_hpc.config.schema import LaunchConfig
    from insr_hpc.launch import BACKENDS

    groups: dict[str, list[dict]] = {}
    for st in live_states:
        if st.get("backend") in BACKENDS:
            groups.setdefault(st["backend"], []).append(st)
    for name, group in groups.items():
        backend = BACKENDS.get(name)(LaunchConfig())
        live = backend.states(group)
        for st in group:
            if st["run_id"] in live:
                st["job_state"] = live[st["run_id"]]
                why = backend.ended_unrecorded(st, st["job_state"]) if st.get("state") in ("pending", "running") \
                    else None
                if why:
                    st["state"], st["reason"] = "failed", why


def cmd_cancel(args) -> int:
    from insr_hpc.analysis.status import find_runs, run_status
    from insr_hpc.config.schema import LaunchConfig

    if not os.path.isdir(args.dir):
        raise InsrError(f"cancel: '{args.dir}' is not a directory")
    states = [run_status(r) for r in find_runs(args.dir)]
    live = [s for s in states if s.get("state") in ("pending", "running")]
    by_backend: dict[str, list[dict]] = {}
    for st in live:
        by_backend.setdefault(st.get("backend", "local"), []).append(st)
    cancelled = []
    for name, group in by_backend.items():
        cancelled += _backend(name, LaunchConfig()).cancel(group)
    print(f"cancelled {len(cancelled)} run(s)" + (": " + ", ".join(cancelled) if cancelled else ""))
    return 0


def cmd_report(args) -> int:
    from insr_hpc.analysis.report import build_report, mpi_comm, run_dirs

    if not os.path.isdir(args.dir):
        raise InsrError(f"report: '{args.dir}' is not a directory")
    if not run_dirs(args.dir):
        raise InsrError(f"report: no runs under '{args.dir}' (expected run directories holding run.json or spec.json)")
    comm = mpi_comm()

    def on_bad(line: str) -> None:
        print(f"insr-hpc: report: {line}", file=sys.stderr)

    report = build_report(args.dir, figures=not args.no_figures, progress=True, comm=comm, on_bad=on_bad)
    if report is None:  # an MPI rank other than 0: its share went to rank 0
        return 0
    ranks = f" on {comm.Get_size()} MPI ranks" if comm is not None and comm.Get_size() > 1 else ""
    print(f"{len(report.records)} run(s){ranks}, {len(report.bad)} bad store(s) → {os.path.join(args.dir, 'report')}")
    for path in report.outputs:
        print(f"  {path}")
    return 1 if report.bad else 0


def cmd_verify(args) -> int:
    from insr_hpc.analysis.verify import verify

    checks = verify(args.path)
    for check in checks:
        print(check.line)
    bad = sum(not c.ok for c in checks)
    print(f"{len(checks)} store(s) checked, {bad} damaged" + ("; submit the sweep again to recompute them" if bad else ""))
    return 1 if bad else 0


def cmd_render(args) -> int:
    from insr_hpc.analysis.render import render_to

    paths = render_to(args.store, args.step, args.resolution, args.out)
    where = f" at {args.resolution} points per dimension" if args.resolution else ""
    for path in paths if isinstance(paths, list) else [paths]:
        print(f"rendered step {args.step}{where} → {path}")
    return 0


COMMANDS = {
    "run": cmd_run, "submit": cmd_submit, "show": cmd_show, "status": cmd_status, "cancel": cmd_cancel,
    "report": cmd_report, "render": cmd_render, "verify": cmd_verify,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Like ``parse_args``, with ``key=value`` overrides accepted anywhere after the
    command (``submit CFG --dry-run time.dt=0.1``), kept in command-line order."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--version"]:  # no command needed
        return argparse.Namespace(command=None, version=True)
    parser = _parser()
    if "_ARGCOMPLETE" in os.environ:  # a shell asking for completions: argcomplete answers and exits
        try:
            import argcomplete
        except ImportError:
            pass
        else:
            argcomplete.autocomplete(parser)
    args, extra = parser.parse_known_args(argv)
    if hasattr(args, "overrides"):
        late = [a for a in extra if not a.startswith("-")]
        args.overrides = list(args.overrides) + late
        extra = [a for a in extra if a.startswith("-")]
    if extra:
        raise InsrError(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        if args.version:
            print(version())
            return 0
        return COMMANDS[args.command](args)
    except InsrError as exc:
        print(f"insr-hpc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("insr-hpc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
