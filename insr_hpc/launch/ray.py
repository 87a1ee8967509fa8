"""Ray: one Ray task per run (a gang of rank tasks for a data-parallel run).

``launch.ray.address`` set → ``ray.init(address=...)``; unset → a local runtime on
loopback with the dashboard off, shut down when the sweep ends. Each task reserves
``launch.ray.num_cpus/num_gpus/memory_gb``; Ray retries a failed task up to
``launch.max_retries`` times (exceptions included), and the retry resumes from the
store.

**Data-parallel runs** (``launch.ddp.nproc_per_node`` × ``nodes`` > 1): a placement
group of one bundle per rank (``STRICT_PACK`` on one node, ``PACK`` over several),
one task per rank in its bundle; each joins the same process group as under
torchrun/Slurm/MPI (``insr_hpc.launch.ddp``, launcher ``ray``: rank, world size and
rank 0's address and port handed to the task). The gang is itself one task (no
resources of its own), so it is retried and cancelled as a whole.

**Detached sweeps** (``submit --no-wait``): the sweep goes to the cluster's job server
(``ray.job_submission``); the Ray job's driver (``python -m insr_hpc.launch.ray_driver``)
runs the tasks there, so the submitting shell may go. run.json holds the Ray job id
(``job_id``/``ray_job``) and the job server's URL, through which ``status`` shows the
job's state and ``cancel`` stops it.

Cancelling a run of an attached sweep asks the submitting driver (through run.json)
to ``ray.cancel`` the task: only the driver holds the task's reference.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
import uuid
from typing import Any

from insr_hpc.errors import ConfigError, InsrError
from insr_hpc.launch.base import BACKENDS, Backend
from insr_hpc.launch.local import available_cores
from insr_hpc.launch.packing import make_packs
from insr_hpc.rundir import RunDir, RunLocked, RunSpec

POLL_S = 0.5
CANCEL_WAIT_S = 15.0
PROBE_TIMEOUT_S = 3.0
LOOKUP_TIMEOUT_S = 10.0
LIVE = ("pending", "running")


def _import_ray():
    try:
        import ray
    except ImportError:
        raise InsrError("launch.backend: 'ray' needs ray (pip install 'insr-hpc[cluster]')") from None
    return ray


def parse_address(address: str) -> tuple[str, str, int]:
    """``host:port`` → ("gcs", host, port); ``ray://h:p`` → ("ray", …); ``http(s)://h:p`` → ("http", …)."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "gcs", address
    elif scheme in ("http", "https"):
        scheme = "http"
    elif scheme != "ray":
        raise ConfigError("launch.ray.address", f"unknown scheme '{scheme}://' in '{address}' (host:port, ray:// or http://)")
    host, colon, port = rest.rstrip("/").rpartition(":")
    if not colon or not host or not port.isdigit():
        raise ConfigError("launch.ray.address", f"expected host:port, ray://host:port or http://host:port, got '{address}'")
    return scheme, host.strip("[]"), int(port)


def _probe(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when something accepts a TCP connection at host:port, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def dashboard_url(address: str) -> str | None:
    """The job server (dashboard) URL of the cluster at ``address``, or None if it has none."""
    scheme, host, port = parse_address(address)
    if scheme == "http":
        return address.rstrip("/")
    if scheme == "ray":
        return None  # the Ray Client port: the job server needs the GCS or dashboard address
    # Asked in a child process: GcsClient retries a port that is no GCS for ~40 s and
    # logs from C++ threads; the child is bounded and its output discarded.
    try:
        out = subprocess.run([sys.executable, "-c", _DASHBOARD_LOOKUP, f"{host}:{port}"], capture_output=True,
                             text=True, timeout=LOOKUP_TIMEOUT_S, env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0"))
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout.strip() else ""
    return f"http://{value}" if value else None


_DASHBOARD_LOOKUP = """
import sys
from ray._private import ray_constants
from ray._raylet import GcsClient
try:  # as ray_cluster.use_ray_token, without importing insr_hpc (and torch)
    from ray._private.authentication.authentication_token_setup import (
        maybe_enable_token_auth_if_token_available as token)
    token(warn_if_disabled=False)
except ImportError:
    pass
value = GcsClient(address=sys.argv[1]).internal_kv_get(
    ray_constants.DASHBOARD_ADDRESS.encode(), ray_constants.KV_NAMESPACE_DASHBOARD, timeout=5)
print(value.decode() if value else "", flush=True)
"""


def _execute_spec(spec: RunSpec, threads: int) -> str:
    """Body of the Ray task: run one spec in the Ray worker process (Ray's retries of a
    failed task come back here, as one more attempt)."""
    from insr_hpc.run import execute

    try:
        execute(spec, threads=threads, job={"backend": "ray", "host": os.uname().nodename})
    except RunLocked:  # another live process computes this run: leave its state alone
        return "skipped"
    except Exception as exc:  # our errors take constructor arguments Ray cannot unpickle
        raise RuntimeError(f"{type(exc).__name__}: {exc}") from None
    return RunDir(spec.run_dir).read_state().get("state", "done")


def _execute_pack(specs: list[RunSpec], threads: int) -> dict[str, str]:
    """Body of a Ray task holding a pack (``launch.pack``): k specs in one worker process
    (:func:`insr_hpc.run.execute_pack`). Returns run_id → outcome."""
    from insr_hpc.run import execute_pack

    try:
        return execute_pack(specs, threads=threads, job={"backend": "ray", "host": os.uname().nodename})
    except Exception as exc:
        raise RuntimeError(f"{type(exc).__name__}: {exc}") from None


def _rank_endpoint() -> tuple[str, int]:
    """(address, free port) on the node this task runs on: rank 0's, for the process group."""
    import ray

    with socket.socket() as s:
        s.bind(("", 0))
        return ray.util.get_node_ip_address(), s.getsockname()[1]


def _execute_rank(spec: RunSpec, place: dict[str, str], threads: int, job: dict[str, Any]) -> str:
    """One rank of a data-parallel run: join the gang's process group and run the spec."""
    from insr_hpc.launch import ddp
    from insr_hpc.run import execute, spec_config

    cfg = spec_config(spec)
    saved = {k: os.environ.get(k) for k in place}
    os.environ.update(place)  # the Ray launcher's variables, read by ddp.detect like torchrun's
    try:
        info = ddp.detect()
        env = ddp.init(info, cfg.device, cfg.launch.ddp.backend, progress=False)
        try:
            execute(spec, env=env, threads=threads, job=job)
        except RunLocked:
            return "skipped"
        except Exception as exc:
            raise RuntimeError(f"rank {info.rank}: {type(exc).__name__}: {exc}") from None
        finally:
            ddp.shutdown()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return RunDir(spec.run_dir).read_state().get("state", "done")


def _execute_gang(spec: RunSpec, bundle: dict[str, float], world: int, strategy: str, threads: int) -> str:
    """Body of a data-parallel run's task: a placement group, one rank task per bundle
    (rank 0 records the attempt and the outcome, as for every run)."""
    import ray
    from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from insr_hpc.launch.ddp import RayGang

    job = {"backend": "ray", "ray_gang": f"{world} ranks, {strategy}"}
    # Unnamed: a retry after a crashed attempt must not collide with that attempt's group.
    pg = placement_group([dict(bundle)] * world, strategy=strategy)
    try:
        ray.get(pg.ready())
        nodes = placement_group_table(pg)["bundles_to_node_id"]

        def in_bundle(i: int, fn):
            return ray.remote(fn).options(
                num_cpus=bundle.get("CPU", 0), num_gpus=bundle.get("GPU", 0), max_retries=0,
                scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=i),
            )

        addr, port = ray.get(in_bundle(0, _rank_endpoint).remote())
        refs = []
        for i in range(world):
            local = sum(1 for j in range(i) if nodes[j] == nodes[i])
            place = RayGang(i, world, local, addr, port).env()
            refs.append(in_bundle(i, _execute_rank).remote(spec, place, threads, job))
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                ray.get(ready[0])
            except Exception:  # one rank failed: the others would wait on it until the timeout
                for ref in pending:
                    ray.cancel(ref, force=True)
                raise
        return RunDir(spec.run_dir).read_state().get("state", "done")
    finally:
        remove_placement_group(pg)


@BACKENDS.register("ray")
class RayBackend(Backend):
    name = "ray"
    can_pack = True
    can_detach = True  # `submit --no-wait` hands the sweep to the cluster's job server

    def __init__(self, launch_cfg):
        super().__init__(launch_cfg)
        self._dashboard: str | None = None

    # -- capability checks (before anything is written) --------------------------------

    def available(self, detach: bool = False) -> None:
        self._check_runtime()
        if detach:
            self._check_detach()

    def _check_runtime(self) -> None:
        _import_ray()
        rc, ddp = self.launch.ray, self.launch.ddp
        if ddp.world_size > 1 and not (rc.num_cpus > 0 or rc.num_gpus > 0):
            raise ConfigError("launch.ray.num_cpus", "a data-parallel run needs num_cpus or num_gpus > 0 per rank")
        if rc.address and rc.address != "auto":
            scheme, host, port = parse_address(rc.address)
            why = _probe(host, port)
            if why:
                raise InsrError(
                    f"launch.ray.address: nothing answers at {host}:{port} ({why}); start the cluster "
                    f"(ray start --head) or fix the address"
                )

    def _check_detach(self) -> None:
        from insr_hpc.launch.ray_cluster import job_server_answers

        address = self.launch.ray.address
        if not address or address == "auto":
            raise InsrError(
                "--no-wait: the ray backend needs launch.ray.address, a running cluster with a job server "
                "(a local runtime ends with this process)"
            )
        url = dashboard_url(address)
        if url is None or not job_server_answers(url, PROBE_TIMEOUT_S):
            where = f" at {url}" if url else ""
            raise InsrError(
                f"--no-wait: no Ray job server answers for launch.ray.address '{address}'{where}; give the head's "
                f"host:port or http://host:DASHBOARD_PORT of a head started with the dashboard "
                f"(ray start --head --include-dashboard=true, pip install 'ray[default]')"
            )
        self._dashboard = url

    # -- running ------------------------------------------------------------------------

    def _connect(self):
        ray = _import_ray()
        rc = self.launch.ray
        if ray.is_initialized():
            return ray, False
        if rc.address:
            from insr_hpc.launch.ray_cluster import use_ray_token

            use_ray_token()  # Ray does not send this machine's token to an explicit address by itself
            try:
                ray.init(address=rc.address, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise InsrError(f"launch.ray.address: cannot connect to '{rc.address}': {exc}") from None
            return ray, True
        ray.init(
            num_cpus=max(available_cores(), self._gang_cpus()),  # a gang runs even on a smaller machine
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
            configure_logging=False,
        )
        return ray, True

    def _gang_cpus(self) -> int:
        world = self.launch.ddp.world_size
        return int(world * self.launch.ray.num_cpus + 0.999) if world > 1 else 0

    def submit(self, specs, sweep_dir, progress=True, wait=True):
        if not wait:
            return self._detach(specs, sweep_dir, progress)
        ray, started = self._connect()
        try:
            return self.run_specs(ray, specs, progress)
        finally:
            if started:
                ray.shutdown()

    def _task(self, ray):
        rc, ddp = self.launch.ray, self.launch.ddp
        common = dict(max_retries=self.launch.max_retries, retry_exceptions=True)
        threads = max(1, int(rc.num_cpus) or self.launch.threads_per_job)
        if ddp.world_size == 1:
            resources = dict(num_cpus=rc.num_cpus, num_gpus=rc.num_gpus, memory=int(rc.memory_gb * 2**30) or None)
            task = ray.remote(_execute_spec).options(name="insr-hpc-run", **resources, **common)
            pack = ray.remote(_execute_pack).options(name="insr-hpc-pack", **resources, **common)

            def start(unit):
                if len(unit) == 1:
                    return task.remote(unit[0], threads)
                return pack.remote(list(unit), threads)

            return start
        bundle = {"CPU": float(rc.num_cpus)}
        if rc.num_gpus:
            bundle["GPU"] = float(rc.num_gpus)
        if rc.memory_gb:
            bundle["memory"] = float(int(rc.memory_gb * 2**30))
        strategy = "STRICT_PACK" if ddp.nodes == 1 else "PACK"
        self._check_gang_fits(ray, bundle, ddp.world_size, strategy)
        gang = ray.remote(_execute_gang).options(num_cpus=0, name="insr-hpc-ddp-run", **common)
        return lambda unit: gang.remote(unit[0], bundle, ddp.world_size, strategy, threads)

    @staticmethod
    def _check_gang_fits(ray, bundle: dict[str, float], world: int, strategy: str) -> None:
        """Refuse a gang no node (STRICT_PACK) or the whole cluster (PACK) could ever hold."""
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        for key, need in bundle.items():
            have = [float(r.get(key, 0)) for r in nodes]
            limit = max(have, default=0.0) if strategy == "STRICT_PACK" else sum(have)
            if need * world > limit:
                where = "one node" if strategy == "STRICT_PACK" else "the cluster"
                raise InsrError(
                    f"launch.ddp: {world} ranks × {need:g} {key} do not fit on {where} of the Ray cluster "
                    f"(at most {limit:g} {key}); lower launch.ddp.nproc_per_node or launch.ray.num_cpus/num_gpus"
                )

    def run_specs(self, ray, specs, progress: bool = True, ray_job: str | None = None) -> dict[str, str]:
        """Start every spec as a task on the connected cluster and wait for all of them.

        ``ray_job``: the Ray job this driver is (a detached sweep); run.json keeps it as
        ``job_id``, the task id goes to ``ray_task``."""
        try:
            launch = self._task(ray)
        except InsrError as exc:  # a gang this cluster cannot hold: each run says why
            return {spec.run_id: RunDir(spec.run_dir).settle(str(exc), unfinished=("pending",)) for spec in specs}
        refs: dict[Any, list[RunSpec]] = {}
        results: dict[str, str] = {}
        queued = []
        for spec in specs:
            rd = RunDir(spec.run_dir)
            if ray_job is not None and rd.cancel_requested():  # cancelled before this driver started
                results[spec.run_id] = rd.settle("", unfinished=("pending",))
                continue
            queued.append(spec)
        # launch.pack > 1: compatible runs share a task (one process, solved batched)
        for unit in make_packs(queued, self.launch.pack):
            ref = launch(unit)
            task = ref.task_id().hex()
            for spec in unit:
                RunDir(spec.run_dir).update(backend="ray", ray_task=task, job_id=ray_job or task)
            refs[ref] = unit
        results.update(self._wait(ray, refs, progress))
        return results

    def _wait(self, ray, refs: dict, progress: bool) -> dict[str, str]:
        results: dict[str, str] = {}
        cancelled: set = set()
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_S)
            for ref in ready:
                outcome = self._outcome(ray, ref, refs[ref])
                results.update(outcome)
                if progress:
                    for run_id, state in outcome.items():
                        print(f"{run_id}: {state} (ray task {ref.task_id().hex()[:12]})", flush=True)
            for ref in pending:
                unit = refs[ref]
                asked = [RunDir(spec.run_dir).cancel_requested() for spec in unit]
                # a pack drops its cancelled runs at a step boundary by itself; the task
                # is cancelled only when every run in it is
                if all(asked) and ref not in cancelled:
                    # A gang is interrupted, not killed: its `finally` removes the placement
                    # group (which ends its ranks); killing it would leave the group held.
                    ray.cancel(ref, force=self.launch.ddp.world_size == 1)
                    cancelled.add(ref)
        return results

    @staticmethod
    def _outcome(ray, ref, unit: list[RunSpec]) -> dict[str, str]:
        """run_id → outcome of a finished task (one run, or a pack of them)."""
        try:
            value = ray.get(ref)
            return value if isinstance(value, dict) else {unit[0].run_id: value}
        except Exception as exc:  # the run's own exception, a crashed worker, or a cancellation
            msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
            return {spec.run_id: RunDir(spec.run_dir).settle(f"{type(exc).__name__}: {msg[:200]}",
                                                             cancelled="cancelled by user (ray.cancel)",
                                                             unfinished=LIVE)
                    for spec in unit}

    # -- detached sweeps ----------------------------------------------------------------

    def _detach(self, specs, sweep_dir: str, progress: bool) -> dict[str, str]:
        from insr_hpc.launch.ray_cluster import job_client

        if not specs:
            return {}
        if self._dashboard is None:
            self._check_detach()
        url = self._dashboard
        sweep = os.path.abspath(sweep_dir)
        sid = f"insr-{os.path.basename(sweep)}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        job_file = os.path.join(sweep, "ray", f"{sid}.json")
        os.makedirs(os.path.dirname(job_file), exist_ok=True)
        runs = [RunDir(spec.run_dir).spec for spec in specs]
        with open(job_file, "w", encoding="utf-8") as fh:
            json.dump({"ray_job": sid, "dashboard": url, "address": self.launch.ray.address, "runs": runs,
                       "submitted": time.time()}, fh, indent=1)
        for spec in specs:
            RunDir(spec.run_dir).update(backend="ray", job_id=sid, ray_job=sid, ray_dashboard=url,
                                        ray_job_file=job_file)
        # The driver runs on the cluster, in this directory (relative paths in the config
        # keep their meaning; a cluster sharing this filesystem is assumed, as for Slurm).
        entrypoint = f"cd {shlex.quote(os.getcwd())} && python -m insr_hpc.launch.ray_driver {shlex.quote(job_file)}"
        try:
            job_client(url).submit_job(entrypoint=entrypoint, submission_id=sid, metadata={"insr_sweep": sweep})
        except Exception as exc:
            for spec in specs:
                RunDir(spec.run_dir).settle(f"ray job submission failed: {exc}"[:300], unfinished=("pending",))
            raise InsrError(f"--no-wait: submitting the Ray job to {url} failed: {exc}") from None
        if progress:
            print(f"ray job {sid} on {url}: {len(specs)} run(s)", flush=True)
        return {spec.run_id: "submitted" for spec in specs}

    @staticmethod
    def _job_statuses(states) -> dict[tuple[str, str], str]:
        """(dashboard, ray job) → the job server's status (PENDING, RUNNING, SUCCEEDED, STOPPED, FAILED)."""
        from insr_hpc.launch.ray_cluster import job_client

        out: dict[tuple[str, str], str] = {}
        clients: dict[str, Any] = {}
        for st in states:
            key = (st.get("ray_dashboard"), st.get("ray_job"))
            if not all(key) or key in out:
                continue
            try:
                if key[0] not in clients:
                    clients[key[0]] = job_client(key[0])
                status = clients[key[0]].get_job_status(key[1])
                out[key] = getattr(status, "value", str(status))
            except Exception as exc:  # the cluster is gone, or never heard of the job
                out[key] = "UNREACHABLE" if "onnect" in str(exc) else "UNKNOWN"
        return out

    def states(self, runs):
        """Detached runs: their Ray job's status on the job server (an attached run's
        task is known only to its driver: left out)."""
        live = self._job_statuses(runs)
        return {st["run_id"]: live[(st["ray_dashboard"], st["ray_job"])]
                for st in runs if (st.get("ray_dashboard"), st.get("ray_job")) in live}

    def cancel(self, states):
        """Detached runs: stop their Ray job when every unfinished run of it is cancelled
        (else its driver cancels the tasks asked). Attached runs: ask the driver."""
        from insr_hpc.launch.ray_cluster import job_client

        asked = [st for st in states if st.get("state") in LIVE]
        for st in asked:
            RunDir(st["run_dir"]).request_cancel()
        asked_dirs = {os.path.abspath(st["run_dir"]) for st in asked}
        stopped: set[str] = set()
        for st in asked:
            sid, url, job_file = st.get("ray_job"), st.get("ray_dashboard"), st.get("ray_job_file")
            if not sid or sid in stopped or not url:
                continue
            try:
                with open(job_file, encoding="utf-8") as fh:
                    runs = [os.path.dirname(p) for p in json.load(fh)["runs"]]
            except (OSError, TypeError, ValueError, KeyError):
                runs = []
            unfinished = {r for r in runs if RunDir(r).read_state().get("state") in LIVE}
            if unfinished - asked_dirs:
                continue  # other runs of that job go on: its driver cancels these
            try:
                client = job_client(url)
                client.stop_job(sid)
                deadline = time.time() + CANCEL_WAIT_S
                while not client.get_job_status(sid).is_terminal() and time.time() < deadline:
                    time.sleep(POLL_S)
            except Exception as exc:
                print(f"insr-hpc: cancel: stopping ray job {sid} at {url}: {exc}")
            stopped.add(sid)
        for st in asked:
            if st.get("ray_job") in stopped:
                RunDir(st["run_dir"]).cancel_if_live(f"cancelled by user (ray job {st['ray_job']} stopped)")
        deadline = time.time() + CANCEL_WAIT_S
        waiting = [st for st in asked if st.get("ray_job") not in stopped]
        while waiting and time.time() < deadline:
            time.sleep(POLL_S)
            waiting = [st for st in waiting if RunDir(st["run_dir"]).read_state().get("state") in LIVE]
        for st in waiting:
            # No driver answered: a Ray task dies with its driver, so nothing runs any more.
            RunDir(st["run_dir"]).cancel_if_live("cancelled (no Ray driver answered; its tasks end with it)")
        return [st.get("run_id") for st in asked]
