"""Ray nodes this process owns: a head (and, in a Slurm allocation, one worker per other node).

``python -m insr_hpc.launch.ray_cluster CONFIG [key=value ...]`` inside an allocation
(``slurm/ray-cluster.sbatch``) starts the Ray head on the allocation's first node and,
with ``srun``, one Ray worker on every other node; waits (bounded) until every node has
joined, naming those that did not; runs ``insr-hpc submit CONFIG --backend ray
launch.ray.address=HEAD:PORT ...``; and stops Ray when the sweep ends, whatever its
outcome. Its exit status is the sweep's (0 all done, 1 some run failed, 2 bad input).

Every node is ``ray start --block`` as a child we hold: SIGTERM to it drains and stops
that node's Ray processes, and Ray's reaper ends them should the child die. Nothing
here calls ``ray stop``, which would stop every Ray of this user on the node.

Ports and the temp dir are per job, derived from ``SLURM_JOB_ID`` (``RayPorts.for_job``,
``/tmp/ray-insr-<job>``), so two allocations sharing a node do not collide; worker
processes bind ports the OS picks.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from insr_hpc.errors import InsrError

PORT_BASE = 30000  # ports PORT_BASE .. PORT_BASE + SLOTS * STRIDE - 1 (below Linux's ephemeral range)
PORT_SLOTS = 250
PORT_STRIDE = 10
START_TIMEOUT_S = 120.0
JOIN_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class RayPorts:
    """The ports of one Ray cluster that have fixed defaults in Ray (the rest are OS-picked)."""

    gcs: int
    dashboard: int
    client: int
    agent: int  # dashboard agent http (Ray's default 52365 would collide between clusters)
    agent_grpc: int
    runtime_env_agent: int
    node_manager: int
    object_manager: int
    metrics: int

    @classmethod
    def from_base(cls, base: int) -> RayPorts:
        return cls(*range(base, base + 9))

    @classmethod
    def for_job(cls, job_id: int) -> RayPorts:
        """A block of ports unique to ``job_id`` among PORT_SLOTS consecutive job ids."""
        return cls.from_base(PORT_BASE + (int(job_id) % PORT_SLOTS) * PORT_STRIDE)

    @classmethod
    def free(cls) -> RayPorts:
        """Ports nothing listens on right now (tests, a laptop)."""
        socks = []
        try:
            for _ in range(9):
                s = socket.socket()
                s.bind(("127.0.0.1", 0))
                socks.append(s)
            return cls(*(s.getsockname()[1] for s in socks))
        finally:
            for s in socks:
                s.close()


def ray_command() -> list[str]:
    """``ray`` of this interpreter (the one next to it, else ``python -m ray.scripts.scripts``)."""
    exe = os.path.join(os.path.dirname(sys.executable), "ray")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "ray.scripts.scripts"]


def node_env() -> dict[str, str]:
    """The environment of a Ray node we start: this interpreter first on PATH, so a Ray
    job's ``python -m insr_hpc...`` entrypoint runs the Python that has insr_hpc."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    return env


def _start_args(ports: RayPorts, temp_dir: str, node_ip: str, node_name: str, num_cpus: int | None,
                num_gpus: int | None) -> list[str]:
    args = [
        f"--node-ip-address={node_ip}", f"--node-name={node_name}", f"--temp-dir={temp_dir}",
        f"--node-manager-port={ports.node_manager}", f"--object-manager-port={ports.object_manager}",
        f"--dashboard-agent-listen-port={ports.agent}", f"--dashboard-agent-grpc-port={ports.agent_grpc}",
        f"--runtime-env-agent-port={ports.runtime_env_agent}", f"--metrics-export-port={ports.metrics}",
        "--min-worker-port=0", "--max-worker-port=0", "--disable-usage-stats", "--block",
    ]
    if num_cpus is not None:
        args.append(f"--num-cpus={num_cpus}")
    if num_gpus is not None:
        args.append(f"--num-gpus={num_gpus}")
    return args


class RayHead:
    """``ray start --head --block`` as our child; ``stop()`` ends it and everything it started."""

    def __init__(self, ports: RayPorts, temp_dir: str, node_ip: str = "127.0.0.1", node_name: str | None = None,
                 num_cpus: int | None = None, num_gpus: int | None = None, log_path: str | None = None):
        self.ports, self.temp_dir, self.node_ip = ports, temp_dir, node_ip
        self.node_name = node_name or node_ip
        os.makedirs(temp_dir, exist_ok=True)
        cmd = [*ray_command(), "start", "--head", f"--port={ports.gcs}", "--include-dashboard=true",
               f"--dashboard-host={node_ip}", f"--dashboard-port={ports.dashboard}",
               f"--ray-client-server-port={ports.client}",
               *_start_args(ports, temp_dir, node_ip, self.node_name, num_cpus, num_gpus)]
        self.log_path = log_path or os.path.join(temp_dir, "head.log")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (open while the head runs)
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=node_env(),
                                     start_new_session=True)

    @property
    def address(self) -> str:
        """The GCS address (``launch.ray.address``)."""
        return f"{self.node_ip}:{self.ports.gcs}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.node_ip}:{self.ports.dashboard}"

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Until the job server answers (the head's last service to come up)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise InsrError(f"ray head exited with code {self.proc.returncode} while starting; see {self.log_path}")
            if job_server_answers(self.dashboard_url, timeout=2.0):
                return
            time.sleep(0.5)
        raise InsrError(f"ray head: job server at {self.dashboard_url} did not answer within {timeout:.0f} s; see {self.log_path}")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        stop_process(self.proc, timeout)
        self._log.close()
        kill_leftovers(self.temp_dir)


def stop_process(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM the child (``ray start --block`` drains and stops its node), then its group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:  # what it started shares its process group (it is the session leader)
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def processes_using(temp_dir: str) -> list[int]:
    """Pids of processes whose command line names ``temp_dir`` (the Ray processes of a
    cluster started with it: raylet, gcs_server, workers get their session path)."""
    pids = []
    needle = os.path.abspath(temp_dir).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                if needle in fh.read():
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


def kill_leftovers(temp_dir: str, wait_s: float = 10.0) -> list[int]:
    """Kill what is left of a cluster started with ``temp_dir`` (only its processes)."""
    deadline = time.time() + wait_s
    left = processes_using(temp_dir)
    while left and time.time() < deadline:  # a draining node ends its processes itself
        time.sleep(0.5)
        left = processes_using(temp_dir)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return left


def use_ray_token() -> None:
    """Send Ray's auth token (``~/.ray/auth_token``, ``RAY_AUTH_TOKEN``) from this process.

    Ray >= 2.52 starts clusters with token authentication when a token exists; its HTTP
    clients (job submission, state API) only send the token once token mode is on in the
    calling process, which ``ray start`` / ``ray.init`` turn on but a bare client does not."""
    import logging

    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray without token authentication
        return
    quiet = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    finally:
        quiet.setLevel(level)


def job_client(dashboard_url: str):
    """A ``JobSubmissionClient`` for the job server at ``dashboard_url``."""
    from ray.job_submission import JobSubmissionClient

    use_ray_token()
    return JobSubmissionClient(dashboard_url)


def job_server_answers(dashboard_url: str, timeout: float = 3.0) -> bool:
    """Whether a Ray job server (the dashboard's job API) answers at ``dashboard_url``."""
    try:
        with urllib.request.urlopen(f"{dashboard_url.rstrip('/')}/api/version", timeout=timeout) as resp:
            return resp.status == 200
    except urllib.error.HTTPError as exc:  # 401/403: there, behind Ray's token authentication
        return exc.code in (401, 403)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def alive_node_names(address: str) -> list[str]:
    """Names of the ALIVE nodes of the cluster at GCS ``address`` (Ray's state API)."""
    from ray.util.state import list_nodes

    use_ray_token()
    try:
        nodes = list_nodes(address=address, timeout=10, raise_on_missing_output=False)
    except Exception:  # the dashboard still starting
        return []
    return sorted(n.node_name for n in nodes if n.state == "ALIVE")


def wait_for_nodes(address: str, names: list[str], timeout: float = JOIN_TIMEOUT_S,
                   workers: subprocess.Popen | None = None) -> list[str]:
    """Until every node in ``names`` is ALIVE; raises InsrError naming the ones missing."""
    deadline = time.time() + timeout
    alive: list[str] = []
    why = f"within {timeout:.0f} s"
    while time.time() < deadline:
        alive = alive_node_names(address)
        if not set(names) - set(alive):
            return alive
        if workers is not None and workers.poll() is not None:  # no more will join
            why = f"(their srun step ended with code {workers.returncode})"
            break
        time.sleep(1.0)
    missing = sorted(set(names) - set(alive))
    raise InsrError(f"ray cluster: node(s) {', '.join(missing)} did not join the head {why} "
                    f"(joined: {', '.join(alive) or 'none'})")


def start_workers(hosts: list[str], head: RayHead, log_path: str) -> subprocess.Popen | None:
    """One ``ray start --address=HEAD --block`` per host, as one ``srun`` step in this allocation."""
    if not hosts:
        return None
    if shutil.which("srun") is None:
        raise InsrError("ray cluster: srun not on PATH, cannot start workers on " + ", ".join(hosts))
    cmd = ["srun", "--overlap", f"--nodes={len(hosts)}", f"--ntasks={len(hosts)}", "--ntasks-per-node=1",
           f"--nodelist={','.join(hosts)}", "--kill-on-bad-exit=0",
           sys.executable, "-m", "insr_hpc.launch.ray_cluster", "worker", head.address,
           "--temp-dir", head.temp_dir, "--ports-base", str(head.ports.gcs)]
    log = open(log_path, "ab")  # noqa: SIM115 (inherited by the srun child)
    try:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=node_env(), start_new_session=True)
    finally:
        log.close()


def _node_ip(host: str) -> str:
    """The node's IP: its name resolved, else its Slurm ``NodeAddr`` (as for DDP ranks).

    A loopback address (Slurm nodes sharing one machine, as on the dev cluster) is
    replaced by the machine's outward IP as Ray finds it: ``ray start --address``
    rewrites a loopback head address that way itself, so a head bound to loopback could
    not be joined."""
    from insr_hpc.launch.ddp import node_address

    try:
        ip = socket.gethostbyname(node_address(host))
    except OSError as exc:
        raise InsrError(f"ray cluster: cannot resolve node '{host}': {exc}") from None
    if ip.startswith("127."):
        import ray.util

        ip = ray.util.get_node_ip_address()
    return ip


def _slurm_int(key: str) -> int | None:
    value = os.environ.get(key, "").split("(")[0].split(",")[0]
    return int(value) if value.isdigit() else None


def run_worker(head_address: str, temp_dir: str, ports_base: int) -> int:
    """One worker node (what ``srun`` runs on each non-head node): blocks until stopped."""
    host = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    ip = _node_ip(host)
    # Slurm nodes on one machine share its IP: their raylets need ports of their own,
    # not the job's block, which the head holds there.
    ports = RayPorts.free() if ip == head_address.rsplit(":", 1)[0] else RayPorts.from_base(ports_base)
    cmd = [*ray_command(), "start", f"--address={head_address}",
           *_start_args(ports, temp_dir, ip, host, _slurm_int("SLURM_CPUS_ON_NODE"),
                        _slurm_int("SLURM_GPUS_ON_NODE"))]
    env = node_env()
    token = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or os.path.exists(token):
        # the head turns token authentication on by itself when a token exists; a
        # joining `ray start --address` does not, and is then refused by the head's GCS
        env.setdefault("RAY_AUTH_MODE", "token")
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    signal.signal(signal.SIGTERM, lambda *_: stop_process(proc, STOP_TIMEOUT_S) or sys.exit(0))
    code = proc.wait()
    kill_leftovers(temp_dir)
    return code


def run_in_allocation(config: str, overrides: list[str], join_timeout: float = JOIN_TIMEOUT_S) -> int:
    """Head here, workers on the other nodes, the sweep on them, then Ray stopped."""
    from insr_hpc.launch.ddp import expand_nodelist

    job = os.environ.get("SLURM_JOB_ID")
    nodelist = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST")
    if not job or not nodelist:
        raise InsrError("ray cluster: not inside a Slurm allocation (SLURM_JOB_ID / SLURM_JOB_NODELIST unset); "
                        "use: sbatch slurm/ray-cluster.sbatch CONFIG")
    hosts = expand_nodelist(nodelist)
    head_host = os.environ.get("SLURMD_NODENAME") or hosts[0]
    others = [h for h in hosts if h != head_host]
    temp_dir = os.path.join(os.environ.get("INSR_RAY_TMP", "/tmp"), f"ray-insr-{job}")
    ports = RayPorts.for_job(int(job))
    print(f"ray cluster: job {job}, head {head_host} ({_node_ip(head_host)}:{ports.gcs}, dashboard "
          f"{ports.dashboard}), {len(others)} worker node(s){': ' + ', '.join(others) if others else ''}, "
          f"temp dir {temp_dir}", flush=True)
    head = RayHead(ports, temp_dir, _node_ip(head_host), head_host, _slurm_int("SLURM_CPUS_ON_NODE"),
                   _slurm_int("SLURM_GPUS_ON_NODE"))
    workers = None
    try:
        head.wait_ready()
        workers = start_workers(others, head, os.path.join(temp_dir, "workers.log"))
        alive = wait_for_nodes(head.address, hosts, join_timeout, workers)
        print(f"ray cluster: {len(alive)} node(s) joined: {', '.join(alive)}", flush=True)
        cmd = [sys.executable, "-m", "insr_hpc", "submit", config, *overrides, f"launch.ray.address={head.address}",
               "--backend", "ray"]
        print("ray cluster: insr-hpc " + " ".join(cmd[3:]), flush=True)
        code = subprocess.call(cmd, env=node_env())
    finally:
        if workers is not None:
            stop_process(workers, STOP_TIMEOUT_S)
        head.stop()
        left = processes_using(temp_dir)
        print(f"ray cluster: stopped ({len(left)} Ray process(es) left under {temp_dir})", flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m insr_hpc.launch.ray_cluster",
                                description="Ray in a Slurm allocation: head, workers, sweep, stop.")
    sub = p.add_subparsers(dest="command")
    w = sub.add_parser("worker", help="(run by srun) one worker node joining HEAD")
    w.add_argument("head")
    w.add_argument("--temp-dir", required=True)
    w.add_argument("--ports-base", type=int, required=True)
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "worker":
        args = p.parse_args(argv)
        return run_worker(args.head, args.temp_dir, args.ports_base)
    s = argparse.ArgumentParser(prog="python -m insr_hpc.launch.ray_cluster")
    s.add_argument("--join-timeout", type=float, default=JOIN_TIMEOUT_S, help="seconds for every node to join")
    s.add_argument("config")
    s.add_argument("overrides", nargs="*")
    args = s.parse_args(argv)
    try:
        return run_in_allocation(args.config, args.overrides, args.join_timeout)
    except InsrError as exc:
        print(f"insr-hpc: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
