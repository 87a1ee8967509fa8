"""One run directory: every file name, the run's state and its allowed changes, the lock.

Nothing else spells a run directory's file names (as submitit's ``JobPaths``). The
state lives in ``run.json`` and changes only through :meth:`RunDir.transition`, which
refuses a change the life cycle does not allow::

    pending ──▶ running ──▶ done | suspect | failed | cancelled
       ▲           │
       └───────────┘  preempted / interrupted: back to pending, resumes from the store

(``failed``, ``cancelled``, ``done`` and ``suspect`` may start again: a re-submit
resumes or recomputes them; ``verify`` may turn a ``done`` run whose store is damaged
into ``failed``.)

**One writer per run.** :meth:`RunDir.lock` takes an advisory ``flock`` on ``run.lock``
and records host and pid in it. The kernel drops the lock when its process dies, so a
lock left by a killed process is free again; whoever takes it next reads the dead
holder's host and pid from the file and says it took the lock over. ``flock`` is
honoured across hosts on NFS (Linux emulates it with POSIX locks) and on Lustre mounted
with ``-o flock``.

**What to run** is a :class:`RunSpec` (plain data: run id, directory, the resolved and
validated config, the sweep point's values, the config's digest), written once per
submit as ``spec.json`` by :meth:`RunDir.write_spec` and read back by
:meth:`RunDir.read_spec`. A spec whose config still matches the digest the plan
recorded was validated when it was planned and is never validated again; one without
it (edited by hand, or built in code) is validated when it is first turned into a
typed config.

**How a run ends** is decided in two places only: by the run itself
(``run.execute`` records done / suspect / failed / cancelled, or pending when
stopped), and, when its process died before it could say, by :meth:`RunDir.settle`,
which every backend calls with the engine's word on the job. A cancel is asked for
through :meth:`RunDir.request_cancel` and seen through :meth:`RunDir.cancel_requested`
whatever the backend.

Importing this module is cheap (no torch, no zarr): ``status`` over thousands of runs uses it.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from insr_hpc.errors import InsrError

STATES = ("pending", "running", "done", "suspect", "failed", "cancelled")
FINAL = ("done", "suspect", "failed", "cancelled")

# state → the states it may change into (a state may always be rewritten as itself,
# e.g. to add a job id, except that done/suspect are only ever reached from running).
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "pending": ("pending", "running", "failed", "cancelled"),
    "running": ("running", "pending", "done", "suspect", "failed", "cancelled"),
    "done": ("pending", "running", "failed"),
    "suspect": ("pending", "running", "failed"),
    "failed": ("failed", "pending", "running", "cancelled"),
    "cancelled": ("cancelled", "pending", "running"),
}


class StateError(RuntimeError):
    """A state change the run life cycle does not allow (a bug, not bad input)."""


EXIT_LOCKED = 3  # a worker's exit code when another live process holds the run's lock


class RunLocked(RuntimeError):
    """Another live process holds this run's lock: it is computing the run right now."""

    def __init__(self, run_dir: str, holder: dict[str, Any]):
        self.run_dir = run_dir
        self.holder = holder
        super().__init__(f"run '{run_dir}' is being computed by {describe_holder(holder)}")


def describe_holder(holder: dict[str, Any]) -> str:
    what = holder.get("command") or "a process"
    return f"{what} on host {holder.get('host', '?')} pid {holder.get('pid', '?')}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def config_digest(config: Any) -> str:
    """sha256 of a resolved config's canonical JSON: what the plan validated."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class RunSpec:
    """What to run: plain data, picklable, the same on every backend.

    ``config`` is the resolved config as plain data; ``digest`` is
    :func:`config_digest` of it, set by the plan once the config was validated (None
    for a spec made by hand). ``typed`` is the typed Config of this process, when the
    plan made it here (never pickled, never written)."""

    run_id: str
    run_dir: str
    config: dict[str, Any]
    overrides: dict[str, Any] = field(default_factory=dict)  # this sweep point's values
    digest: str | None = None
    typed: Any = field(default=None, repr=False, compare=False)

    @property
    def validated(self) -> bool:
        """Is ``config`` exactly what a plan validated (its digest still matches)?"""
        return self.digest is not None and self.digest == config_digest(self.config)

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "run_dir": self.run_dir, "config": self.config,
                "overrides": self.overrides, "digest": self.digest}

    def __getstate__(self) -> dict[str, Any]:  # a Ray task gets the data, not this process's objects
        return self.to_json() | {"typed": None}

    def save(self) -> str:
        """Write this spec as its run directory's spec.json (:meth:`RunDir.write_spec`)."""
        return RunDir(self.run_dir).write_spec(self)

    @classmethod
    def load(cls, path: str) -> RunSpec:
        """The spec in ``path`` (a run directory's spec.json)."""
        return RunDir(os.path.dirname(os.path.abspath(path))).read_spec(path)


class ProgressNote:
    """A run's :meth:`RunDir.write_progress`, at most once per ``every`` seconds (the
    first call writes): cheap enough to call at every optimiser iteration. Disabled
    (``enabled=False``) on every rank but the main one."""

    def __init__(self, run_dir: str, enabled: bool = True, every: float = 2.0):
        self.rd = RunDir(run_dir) if enabled else None
        self.every = every
        self._last = -float("inf")

    def __call__(self, force: bool = False, **note: Any) -> None:
        if self.rd is None:
            return
        now = time.monotonic()
        if force or now - self._last >= self.every:
            self._last = now
            self.rd.write_progress(note)


class RunDir:
    """The files of one run (``root/name/run_id/``) and the operations on its state."""

    SPEC = "spec.json"
    STATE = "run.json"
    LOG = "log.txt"
    ERROR = "error.txt"
    STORE = "store.zarr"
    TB = "tb"
    CHECKPOINT = "checkpoint.pt"
    LOCK = "run.lock"
    STATE_GUARD = ".run.json.lock"  # held for the moment of one run.json read-modify-write
    PROGRESS = "progress.json"  # where a running run is inside its current step (written by its main rank)
    # What a run writes; ``clear_outputs`` removes it to start over (spec.json, log.txt
    # and the lock stay: the spec is what will run, the log is the user's history).
    STORE_BUILDING = STORE + ".extending"  # a longer store being built (StepStore.extend)
    STORE_ASIDE = STORE + ".pre-extend"  # the store moved aside while the longer one replaces it
    OUTPUTS = (STORE, STORE + ".partial", STORE_BUILDING, STORE_ASIDE, TB, CHECKPOINT, STATE, ERROR, PROGRESS)

    def __init__(self, path: str):
        self.path = os.path.abspath(os.fspath(path))

    def __repr__(self) -> str:
        return f"RunDir({self.path!r})"

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    @property
    def spec(self) -> str:
        return self.file(self.SPEC)

    @property
    def state_file(self) -> str:
        return self.file(self.STATE)

    @property
    def log(self) -> str:
        return self.file(self.LOG)

    @property
    def error(self) -> str:
        return self.file(self.ERROR)

    @property
    def store(self) -> str:
        return self.file(self.STORE)

    @property
    def tb(self) -> str:
        return self.file(self.TB)

    @property
    def checkpoint(self) -> str:
        return self.file(self.CHECKPOINT)

    @property
    def lock_file(self) -> str:
        return self.file(self.LOCK)

    @property
    def progress(self) -> str:
        return self.file(self.PROGRESS)

    @staticmethod
    def is_run_dir(filenames) -> bool:
        return RunDir.SPEC in filenames or RunDir.STATE in filenames

    def check_not_linked(self) -> None:
        """Refuse (InsrError) a run directory, or a file of it, that is a symbolic link:
        a link would make the run write (or ``output.overwrite`` delete) outside
        ``output.root``."""
        for path in (self.path, *(self.file(name) for name in (self.SPEC, self.STATE, self.LOCK, *self.OUTPUTS))):
            if os.path.islink(path):
                raise InsrError(f"'{path}' is a symbolic link (to '{os.readlink(path)}'); a run directory and its "
                                "files must be real: remove the link or use another output.root")

    # -- the spec -----------------------------------------------------------------
    def write_spec(self, spec: RunSpec) -> str:
        """Write ``spec.json`` (atomically): once per submit, before a backend sees the run."""
        os.makedirs(self.path, exist_ok=True)
        tmp = f"{self.spec}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(spec.to_json(), fh, indent=1, default=str)
        os.replace(tmp, self.spec)
        return self.spec

    def read_spec(self, path: str | None = None) -> RunSpec:
        """The run's spec (InsrError naming the file when it is missing or not a spec)."""
        path = path or self.spec
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except OSError as exc:
            raise InsrError(f"{path}: cannot read the run's spec: {exc.strerror or exc}") from None
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise InsrError(f"{path}: not a run spec (not valid JSON: {str(exc).splitlines()[0][:120]})") from None
        keys = ("run_id", "run_dir", "config")
        if not isinstance(data, dict) or not all(k in data for k in keys) or not isinstance(data["config"], dict) \
                or not isinstance(data.get("overrides", {}), dict):
            raise InsrError(f"{path}: not a run spec (expected an object with {', '.join(keys)})")
        return RunSpec(str(data["run_id"]), str(data["run_dir"]), data["config"], data.get("overrides") or {},
                       data.get("digest") if isinstance(data.get("digest"), str) else None)

    def spec_matches(self, spec: RunSpec) -> bool:
        """Does the spec.json on disk hold exactly ``spec``?"""
        try:
            return self.read_spec().to_json() == json.loads(json.dumps(spec.to_json(), default=str))
        except InsrError:
            return False

    # -- state ------------------------------------------------------------------
    def read_state(self) -> dict[str, Any]:
        try:
            with open(self.state_file, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError, RecursionError):  # ValueError: bad JSON or not UTF-8
            return {"state": "pending"}
        return data if isinstance(data, dict) else {"state": "pending"}

    def committed_steps(self) -> int:
        """Leading committed steps of the run's store (0 without a readable one)."""
        from insr_hpc.store_small import read_small  # numpy only: cheap

        try:
            done = read_small(os.path.join(self.store, "committed")).astype(bool)
        except Exception:
            return 0
        return int(done.argmin()) if not done.all() else len(done)

    # -- the progress note ------------------------------------------------------------
    def write_progress(self, note: dict[str, Any]) -> None:
        """Replace ``progress.json`` (atomically) with where the running run is inside its
        current step, e.g. ``{"step": 0, "substep": "fit", "iteration": 800, "of": 2000}``
        (PDE) or ``{"epoch": 12, "of": 200}`` (reconstruction); ``time`` is added. Written
        by the run's main rank only, at most every few seconds (:class:`ProgressNote`);
        ``status`` shows it for running runs. A failed write is ignored: a note, not a record."""
        tmp = f"{self.progress}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump({**note, "time": time.time()}, fh, default=str)
            os.replace(tmp, self.progress)
        except OSError:
            try:
                os.remove(tmp)
            except OSError:
                pass

    def read_progress(self) -> dict[str, Any] | None:
        """The run's last progress note (None without a readable one)."""
        try:
            with open(self.progress, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError, RecursionError):
            return None
        return data if isinstance(data, dict) else None

    def request_cancel(self) -> None:
        """Ask for this run to be cancelled (the one cancel protocol of every backend):
        the run stops at its next step boundary, a pack drops it, a Ray driver cancels its
        task; whoever sees the run end without an outcome records ``cancelled``."""
        self.update(cancel_requested=True)

    def cancel_requested(self) -> bool:
        return bool(self.read_state().get("cancel_requested"))

    def settle(self, ended: str, *, cancelled: str = "cancelled by user", stopping: str | None = None,
               unfinished: tuple[str, ...] = ("running",)) -> str:
        """The engine says this run's job is over (``ended``: how, e.g. ``worker exited
        with code -9``). An outcome the run recorded itself stands; a run still in one of
        the ``unfinished`` states is recorded ``cancelled`` (reason ``cancelled``) when a
        cancel was asked, back to ``pending`` with reason ``stopping`` when the submit
        itself was being stopped, else ``failed`` with reason ``ended``. Returns the
        state now. (``unfinished`` includes ``pending`` for engines that queue a job
        before its run starts, e.g. Slurm: a job cancelled in the queue never ran.)"""
        state = self.read_state()
        if state.get("state", "pending") not in unfinished:
            return state.get("state", "pending")
        try:
            if state.get("cancel_requested"):
                return self.transition("cancelled", cancelled)["state"]
            if stopping is not None:
                return self.transition("pending", stopping)["state"]
            return self.transition("failed", ended)["state"]
        except StateError:  # it recorded its own end meanwhile
            return self.read_state().get("state", "failed")

    def cancel_if_live(self, reason: str) -> bool:
        """Record ``cancelled`` unless the run ended meanwhile (a job that finished while
        ``cancel`` was at work keeps its outcome). Returns whether it was cancelled."""
        if self.read_state().get("state") not in ("pending", "running"):
            return False
        try:
            self.transition("cancelled", reason)
        except StateError:  # it ended between the read and the write
            return False
        return True

    def begin_attempt(self, **changes: Any) -> int:
        """Count one more attempt at this run (a retry of a backend comes back here) and
        record ``changes``. When the attempt before it failed, or ended without recording
        any outcome (its process, or the node under it, died), ``earlier_attempts`` says
        so and from which step this one resumes. Returns the new attempt's number."""
        prev = self.read_state()
        n = int(prev.get("attempts", 0)) + 1
        log = list(prev.get("earlier_attempts") or [])
        if n > 1 and prev.get("state") in ("running", "failed"):
            steps = self.committed_steps()
            if prev.get("state") == "running":
                how = (f"ended without recording an outcome (its process {prev.get('pid', '?')} on "
                       f"{prev.get('host', '?')} died)")
            else:
                how = f"failed: {prev.get('reason') or 'no reason recorded'}"
            log.append(f"attempt {n - 1} {how}; attempt {n} resumed after step {steps}" if steps
                       else f"attempt {n - 1} {how}; attempt {n} started over (no step committed)")
        self.update(attempts=n, earlier_attempts=log, **changes)
        return n

    def update(self, **changes: Any) -> dict[str, Any]:
        """Merge ``changes`` into run.json (atomically). A ``state`` among them must be
        an allowed transition (:class:`StateError` otherwise)."""
        with self._state_guard():
            return self._update(changes)

    @contextmanager
    def _state_guard(self):
        """Serialise read-modify-writes of run.json between processes (a backend
        recording a job id while the job records that it runs). Best effort: where the
        guard file cannot be made (a full disk), the write goes on unguarded."""
        try:
            os.makedirs(self.path, exist_ok=True)
            fd = os.open(self.file(self.STATE_GUARD), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _update(self, changes: dict[str, Any]) -> dict[str, Any]:
        state = self.read_state()
        if "state" in changes:
            old, new = state.get("state", "pending"), changes["state"]
            if new not in STATES:
                raise StateError(f"{self.path}: unknown state {new!r}")
            if new != old and new not in TRANSITIONS.get(old, STATES):
                raise StateError(f"{self.path}: state may not change from {old!r} to {new!r}")
        state.update(changes)
        state["updated"] = time.time()
        self._write_state(state)
        return state

    def transition(self, state: str, reason: str | None = None, **changes: Any) -> dict[str, Any]:
        """Change the run's state (and its reason; None clears it)."""
        return self.update(state=state, reason=reason, **changes)

    def _write_state(self, data: dict[str, Any]) -> None:
        os.makedirs(self.path, exist_ok=True)
        text = json.dumps(data, indent=1, default=str)
        tmp = f"{self.state_file}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, self.state_file)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            # Disk full: a new file needs a block the disk no longer has, but run.json
            # already owns one. Rewrite it in place (not atomic, but the state a full
            # disk leaves behind must not be a stale "running").
            try:
                os.remove(tmp)
            except OSError:
                pass
            compact = json.dumps(data, separators=(",", ":"), default=str)
            with open(self.state_file, "r+" if os.path.exists(self.state_file) else "w", encoding="utf-8") as fh:
                fh.write(compact)
                fh.truncate()

    def clear_outputs(self) -> None:
        """Delete the run's results so it starts from step 0 (``output.overwrite``).

        Done once, by the command that submits the run, never by the run itself: a
        requeued or restarted run must resume, not wipe what it has already computed."""
        for name in self.OUTPUTS:
            path = self.file(name)
            if os.path.islink(path):  # never delete through a link: only the link goes
                os.remove(path)
            elif os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)

    def write_error(self, text: str) -> None:
        try:
            with open(self.error, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError:
            pass  # a full disk must not hide the state change that follows

    # -- the lock -------------------------------------------------------------------
    def holder(self) -> dict[str, Any] | None:
        """Who holds the lock now (host, pid, command, since), or None if it is free."""
        if not os.path.exists(self.lock_file):
            return None
        try:
            fd = os.open(self.lock_file, os.O_RDONLY)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return self._read_holder() or {"host": "?", "pid": "?"}
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def _read_holder(self) -> dict[str, Any] | None:
        try:
            with open(self.lock_file, encoding="utf-8") as fh:
                data = json.loads(fh.read() or "null")
        except (OSError, ValueError, RecursionError):  # ValueError: bad JSON or not UTF-8
            return None
        return data if isinstance(data, dict) else None

    @contextmanager
    def lock(self, command: str = "insr-hpc", wait: bool = False, on_takeover=None, label: bool = True):
        """Hold the run's lock for the ``with`` block. Raises :class:`RunLocked` naming
        the live holder unless ``wait``. ``on_takeover(previous)`` is called when the
        lock file names a different process that has gone (a stale lock taken over).
        ``label=False``: hold it for a moment without writing this process into the file
        (which then keeps naming the last holder that computed the run)."""
        os.makedirs(self.path, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise RunLocked(self.path, self._read_holder() or {}) from None
            if not label:
                try:
                    yield {}
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                return
            previous = self._read_holder()
            me = {"host": socket.gethostname(), "pid": os.getpid(), "command": command, "since": time.time()}
            if previous and (previous.get("host"), previous.get("pid")) != (me["host"], me["pid"]) and on_takeover:
                gone = previous.get("host") == me["host"] and not pid_alive(int(previous.get("pid") or 0))
                if gone or previous.get("host") != me["host"]:
                    on_takeover(previous)
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(me).encode(), 0)
            except OSError:
                pass  # disk full: the lock itself is held; only its label is missing
            try:
                yield me
            finally:
                try:
                    os.ftruncate(fd, 0)  # a free lock names nobody
                except OSError:
                    pass
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @contextmanager
    def try_lock(self, command: str = "insr-hpc", label: bool = True):
        """Like :meth:`lock` without waiting, but yields None instead of raising when held."""
        try:
            cm = self.lock(command, label=label)
            me = cm.__enter__()
        except RunLocked:
            yield None
            return
        try:
            yield me
        finally:
            cm.__exit__(None, None, None)
