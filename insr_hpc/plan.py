"""From a config file and overrides to the list of RunSpecs a submit will run.

Everything is validated here, before any directory is created: every sweep point's
config, the backend name and the output root's writability.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from insr_hpc.catalog import CATALOG
from insr_hpc.config import config_to_dict, sweep_points
from insr_hpc.config.load import announce, merge_dicts, read_layers
from insr_hpc.config.expand import expand_configs
from insr_hpc.errors import ConfigError, InsrError
from insr_hpc.rundir import RunDir, RunSpec, config_digest


@dataclass
class Plan:
    specs: list[RunSpec]
    configs: list  # validated Config per spec
    sweep_dir: str  # output.root/name: where every run of this submit lives

    @property
    def launch(self):
        return self.configs[0].launch


def plan_runs(
    config_path: str, overrides: Sequence[str] = (), incremental: bool = True, notes: list[str] | None = None
) -> Plan:
    """``notes``: where the notes of the plan go (an override or a sweep point that
    switches a tagged section's class, e.g. ``optim.name``, drops the file's keys of that
    section the new class lacks, and says so once per distinct set); None: printed on
    stderr once everything is validated (a refused plan prints only its error)."""
    file_data, given = read_layers(config_path, overrides)
    raw = merge_dicts(file_data, given)
    points = sweep_points(raw)
    found: list[str] = []
    configs = expand_configs(raw, points, CATALOG, incremental=incremental, layers=(file_data, given), notes=found)
    from insr_hpc.launch import BACKENDS

    for backend in {c.launch.backend for c in configs}:
        BACKENDS.get(backend)
    roots = {(c.output.root, c.name) for c in configs}
    if len({os.path.abspath(os.path.join(*r)) for r in roots}) != 1:
        raise ConfigError("sweep", "output.root and name may not be swept (all runs share one sweep directory)")
    root, name = roots.pop()
    sweep_dir = os.path.abspath(os.path.join(root, name))
    check_writable(sweep_dir, "output.root")
    check_name_lengths(sweep_dir, name, [p.run_id for p in points])
    shared: dict[int, dict] = {}  # points share their unchanged sections: so do their dicts (read-only)
    specs = []
    for p, cfg in zip(points, configs, strict=True):
        data = config_to_dict(cfg, shared)  # validated above: the digest seals what was validated
        specs.append(RunSpec(p.run_id, os.path.join(sweep_dir, p.run_id), data, dict(p.overrides),
                             config_digest(data), typed=cfg))
    from insr_hpc.launch.packing import check_packing

    check_packing(specs, configs)
    if notes is None:
        announce(found)
    else:
        notes.extend(found)
    return Plan(specs, configs, sweep_dir)


def check_name_lengths(sweep_dir: str, name: str, run_ids: Sequence[str]) -> None:
    """``name`` and every run id are single directory names: each must fit the file
    system's limit on a name (PC_NAME_MAX of the nearest existing ancestor)."""
    limit = _name_max(sweep_dir)
    if len(os.fsencode(name)) > limit:
        raise ConfigError("name", f"{len(os.fsencode(name))} bytes long; the file system under "
                          f"'{os.path.dirname(sweep_dir)}' allows at most {limit} in a directory name")
    longest = max(run_ids, key=lambda r: len(os.fsencode(r)), default="")
    if len(os.fsencode(longest)) > limit:
        raise ConfigError("sweep", f"run id '{longest[:40]}…' is {len(os.fsencode(longest))} bytes long; "
                          f"the file system allows at most {limit} (use sweep.labels for shorter names)")


def _name_max(path: str) -> int:
    probe = path
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    try:
        return os.pathconf(probe, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def check_writable(path: str, key: str) -> None:
    """Fail unless ``path`` exists as a writable directory or could be created: probed
    by creating and removing an entry in the nearest existing directory (permission
    bits say nothing to root, nor about /proc, /sys or a read-only mount)."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise InsrError(f"{key}: cannot create '{path}': '{probe}' is not a directory")
    try:
        entry = tempfile.mkdtemp(prefix=".insr-hpc-probe-", dir=probe)
        os.rmdir(entry)
    except OSError as exc:
        raise InsrError(f"{key}: cannot create '{path}': '{probe}' is not writable "
                        f"({exc.strerror or type(exc).__name__})") from None


def preview(spec: RunSpec) -> str:
    """What submitting ``spec`` would do to its run directory, in words: ``new``,
    ``resume from step k``, ``extend k → n`` (time.steps raised: steps 0…k-1 kept),
    ``done``, or ``conflict: KEY differs (store: A, this run: B)``. Reads run.json and the
    store's root metadata only."""
    rd = RunDir(spec.run_dir)
    if not any(os.path.exists(rd.file(name)) for name in (RunDir.STORE, RunDir.STORE_ASIDE)):
        return "new"  # (no store: zarr is not even imported)
    from insr_hpc.store import StepStore, StoreFormatError, json_safe  # zarr, not torch
    from insr_hpc.workloads import extends, resume_conflict

    path = StepStore.readable_path(rd.store)
    if not StepStore.exists(path):
        return "new"
    if (spec.config.get("output") or {}).get("overwrite"):
        return "new (output.overwrite: its results are deleted first)"
    if StepStore.interrupted(rd.store):
        return "resume (an extension was interrupted: the store is put back first)"
    try:
        stored = StepStore.read_attrs(path).get("config", {})
    except StoreFormatError as exc:
        return f"conflict: {exc}"
    conflict = resume_conflict(stored, json_safe(dict(spec.config)))
    if conflict is not None:
        key, was, now = conflict
        return f"conflict: {key} differs (store: {was!r}, this run: {now!r})"
    done = rd.committed_steps()
    if extends(stored, spec.config):
        return f"extend {done} → {spec.config['time']['steps'] + 1} steps"
    if rd.read_state().get("state") == "done":
        return "done"
    return f"resume from step {done}" if done else "new"
