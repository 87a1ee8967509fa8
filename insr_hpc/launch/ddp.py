"""Data-parallel runs: a process group from whatever launched us, and the RunEnv on it.

Launchers recognised, one :class:`Launcher` class each, tried in the order of
:data:`LAUNCHERS` (first match wins; malformed variables are an InsrError naming them):

* **Ray** (the ray backend's gang of rank tasks in a placement group) — ``INSR_RAY_RANK``,
  ``INSR_RAY_WORLD_SIZE``, ``INSR_RAY_LOCAL_RANK``, ``INSR_RAY_MASTER_ADDR``,
  ``INSR_RAY_MASTER_PORT``, set by each rank task from :class:`RayGang` (rank 0's node
  address and a free port there, found by a probe task in rank 0's bundle);
* **torchrun** — ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``;
* **MPI** (``mpiexec -n N``; the launcher's variables as :func:`insr_hpc.mpi.launched_by_mpi`
  knows them) — rank and size from mpi4py; rank 0 picks the master address and a free
  port and broadcasts them;
* **Slurm** (``srun`` with several tasks) — ``SLURM_PROCID``, ``SLURM_NTASKS``,
  ``SLURM_LOCALID``; master = first host of ``SLURM_JOB_NODELIST``, port derived from
  the job id (override with ``MASTER_PORT``);
* **single** — anything else: one process.

gloo on CPU, NCCL on CUDA. Gradients are averaged with one ``all_reduce`` of the
flattened gradient vector per iteration (``reduce_grads``) rather than by wrapping the
fields in ``DistributedDataParallel``: the step loop calls each field several times
per iteration (interior, boundary, the integrator's history terms) through closures
the case builds, and takes input derivatives with ``create_graph``; routing every
call through a DDP wrapper would touch every case. A SIREN has a few thousand
parameters, so a single flat all-reduce costs what DDP's bucketed one would.
Run: ``torchrun --nproc_per_node 2 -m insr_hpc.launch.ddp SPEC.json`` (or under
``srun`` / ``mpiexec``).
"""

from __future__ import annotations

import datetime
import os
import re
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from insr_hpc.errors import InsrError
from insr_hpc.mpi import comm_world
from insr_hpc.runtime import RunEnv


@dataclass(frozen=True)
class ProcessGroupInfo:
    """Where this process sits in the job, and how to reach rank 0."""

    launcher: str  # torchrun | mpi | slurm | ray | single
    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int


def _env_str(env: Mapping[str, str], key: str, who: str) -> str:
    try:
        return env[key]
    except KeyError:
        raise InsrError(f"{who}: {key} is not set") from None


def _env_int(env: Mapping[str, str], key: str, who: str, default: int | None = None, minimum: int = 0) -> int:
    """``env[key]`` as an integer ≥ ``minimum`` (``default`` when unset and a default is
    given); InsrError naming the variable and the launcher (``who``) otherwise."""
    if key not in env and default is not None:
        return default
    raw = _env_str(env, key, who)
    try:
        value = int(raw)
    except ValueError:
        raise InsrError(f"{who}: {key}={raw!r} is not an integer") from None
    if value < minimum:
        raise InsrError(f"{who}: {key}={value} must be >= {minimum}")
    return value


def _env_port(env: Mapping[str, str], key: str, who: str, default: int | None = None) -> int:
    port = _env_int(env, key, who, default, minimum=1)
    if port > 65535:
        raise InsrError(f"{who}: {key}={port} is not a TCP port (1..65535)")
    return port


def _rank_world(env: Mapping[str, str], rank_key: str, world_key: str, who: str) -> tuple[int, int]:
    """(rank, world size) from two variables, checked: integers, 0 <= rank < world size."""
    rank, world = _env_int(env, rank_key, who), _env_int(env, world_key, who, minimum=1)
    if rank >= world:
        raise InsrError(f"{who}: {rank_key}={rank} must be < {world_key}={world}")
    return rank, world


@dataclass(frozen=True)
class RayGang:
    """A rank's place in a Ray gang, as the ray backend hands it to the rank's task."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int

    PREFIX = "INSR_RAY_"

    def env(self) -> dict[str, str]:
        """The variables :func:`detect` reads (set by the rank task around the run)."""
        return {f"{self.PREFIX}{k.upper()}": str(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_env(cls, env) -> RayGang | None:
        if f"{cls.PREFIX}RANK" not in env:
            return None
        p, who = cls.PREFIX, "ray"
        rank, world = _rank_world(env, f"{p}RANK", f"{p}WORLD_SIZE", who)
        return cls(rank, world, _env_int(env, f"{p}LOCAL_RANK", who), _env_str(env, f"{p}MASTER_ADDR", who),
                   _env_port(env, f"{p}MASTER_PORT", who))

    def info(self) -> ProcessGroupInfo:
        return ProcessGroupInfo("ray", self.rank, self.world_size, self.local_rank, self.master_addr, self.master_port)


def expand_nodelist(nodelist: str) -> list[str]:
    """Slurm's compressed host list → host names, e.g. ``a[1-3,7],b2`` → a1 a2 a3 a7 b2.

    Prefers ``scontrol show hostnames`` (knows every syntax); falls back to a parser of
    the common ``prefix[ranges]`` form when scontrol is not on PATH."""
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.split():
            return out.stdout.split()
    except (OSError, subprocess.SubprocessError):
        pass
    hosts: list[str] = []
    for prefix, ranges in re.findall(r"([^,\[]+)(?:\[([^\]]*)\])?,?", nodelist):
        if not ranges:
            hosts.append(prefix)
            continue
        for part in ranges.split(","):
            lo, _, hi = part.partition("-")
            for i in range(int(lo), int(hi or lo) + 1):
                hosts.append(f"{prefix}{i:0{len(lo)}d}")
    return hosts


def node_address(node: str) -> str:
    """Where to reach Slurm node ``node``: its name when that resolves (the usual case),
    else the node's ``NodeAddr`` from ``scontrol show node`` (node names that are not
    host names, as on the dev cluster's several nodes on one machine)."""
    try:
        socket.gethostbyname(node)
        return node
    except OSError:
        pass
    try:
        out = subprocess.run(["scontrol", "show", "node", "-o", node], capture_output=True, text=True, timeout=10)
        match = re.search(r"\bNodeAddr=(\S+)", out.stdout)
        if match:
            return match.group(1)
    except (OSError, subprocess.SubprocessError):
        pass
    return node


class Launcher:
    """One way of being started as a rank of a job. :meth:`detect` reads the launcher's
    variables from ``env``: this process's place in the job, or None when that launcher
    did not start it (malformed variables: an InsrError naming the variable)."""

    name: str

    def detect(self, env: Mapping[str, str]) -> ProcessGroupInfo | None:
        raise NotImplementedError


class RayLauncher(Launcher):
    """The ray backend's gang (``INSR_RAY_*``, see :class:`RayGang`)."""

    name = "ray"

    def detect(self, env):
        gang = RayGang.from_env(env)
        return None if gang is None else gang.info()


class TorchrunLauncher(Launcher):
    """``RANK``, ``WORLD_SIZE`` and ``MASTER_ADDR`` all set (``LOCAL_RANK`` default 0,
    ``MASTER_PORT`` default 29500)."""

    name = "torchrun"

    def detect(self, env):
        if not ("RANK" in env and "WORLD_SIZE" in env and "MASTER_ADDR" in env):
            return None
        rank, world = _rank_world(env, "RANK", "WORLD_SIZE", self.name)
        return ProcessGroupInfo(self.name, rank, world, _env_int(env, "LOCAL_RANK", self.name, 0),
                                env["MASTER_ADDR"], _env_port(env, "MASTER_PORT", self.name, 29500))


class MPILauncher(Launcher):
    """An MPI starter (:func:`insr_hpc.mpi.launched_by_mpi`) with more than one rank:
    rank and size from mpi4py; rank 0 picks the master address and a free port and
    broadcasts them. Only for this process's own environment (``env is os.environ``):
    mpi4py reads that, not a mapping handed in."""

    name = "mpi"

    def detect(self, env):
        if env is not os.environ:
            return None
        comm = comm_world()
        if comm is None or comm.Get_size() <= 1:
            return None
        from mpi4py import MPI

        local = comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()
        addr_port = None
        if comm.Get_rank() == 0:
            addr = os.environ.get("MASTER_ADDR") or _routable_address()
            with socket.socket() as s:  # a free port on rank 0's host
                s.bind(("", 0))
                addr_port = (addr, s.getsockname()[1])
        addr, port = comm.bcast(addr_port, root=0)
        return ProcessGroupInfo(self.name, comm.Get_rank(), comm.Get_size(), local, addr, port)


class SlurmLauncher(Launcher):
    """``srun`` with several tasks: ``SLURM_PROCID`` set and ``SLURM_NTASKS`` > 1
    (``SLURM_LOCALID`` default 0); master = first host of ``SLURM_JOB_NODELIST`` (or
    ``MASTER_ADDR``), port 20000 + job id mod 20000 (or ``MASTER_PORT``)."""

    name = "slurm"

    def detect(self, env):
        if "SLURM_PROCID" not in env or _env_int(env, "SLURM_NTASKS", self.name, 1, minimum=1) <= 1:
            return None
        rank, world = _rank_world(env, "SLURM_PROCID", "SLURM_NTASKS", self.name)
        job = _env_int(env, "SLURM_JOB_ID", self.name, 0)
        port = _env_port(env, "MASTER_PORT", self.name, 20000 + job % 20000)
        addr = env.get("MASTER_ADDR")
        if not addr:
            hosts = expand_nodelist(env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST", "localhost"))
            addr = node_address(hosts[0])
        return ProcessGroupInfo(self.name, rank, world, _env_int(env, "SLURM_LOCALID", self.name, 0), addr, port)


class SingleLauncher(Launcher):
    """Anything else: one process, rank 0 of 1."""

    name = "single"

    def detect(self, env):
        return ProcessGroupInfo(self.name, 0, 1, 0, "127.0.0.1", 0)


# Tried in this order; the first that recognises the environment wins. Ray first: its
# rank tasks may run inside a Slurm allocation (SLURM_* inherited from the Ray node);
# torchrun before MPI and Slurm: torchrun may itself run under srun or mpiexec (one
# agent per node), and its RANK is the process's place among all workers; MPI before
# Slurm: ``srun --mpi=pmi2/pmix`` sets both, and MPI then knows the ranks.
LAUNCHERS: tuple[Launcher, ...] = (RayLauncher(), TorchrunLauncher(), MPILauncher(), SlurmLauncher(), SingleLauncher())


def detect(env=None) -> ProcessGroupInfo:
    """Read the launcher's variables (``env`` defaults to ``os.environ``): the first of
    :data:`LAUNCHERS` that recognises them."""
    env = os.environ if env is None else env
    for launcher in LAUNCHERS:
        info = launcher.detect(env)
        if info is not None:
            return info
    raise AssertionError("SingleLauncher recognises every environment")


def _routable_address() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def _device(local_rank: int, requested: str) -> torch.device:
    if requested == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    if requested.startswith("cuda:"):
        return torch.device(requested)
    return torch.device(f"cuda:{local_rank % torch.cuda.device_count()}")


def init(info: ProcessGroupInfo, device: str = "auto", backend: str = "auto", progress: bool = True) -> RunEnv:
    """Join the process group described by ``info`` and return this rank's RunEnv.

    ``device``: the config's ``device`` (auto | cpu | cuda | cuda:N); ``backend``: the
    config's ``launch.ddp.backend`` (auto | gloo | nccl)."""
    dev = _device(info.local_rank, device)
    if info.world_size == 1:
        return RunEnv(device=dev, progress=progress)
    if backend == "auto":
        backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(
            backend,
            init_method=f"tcp://{info.master_addr}:{info.master_port}",
            rank=info.rank,
            world_size=info.world_size,
            timeout=datetime.timedelta(minutes=10),
        )
    return group_env(dev, info.rank, info.world_size, progress and info.rank == 0)


def group_env(dev: torch.device, rank: int, world: int, progress: bool = True) -> RunEnv:
    """This rank's RunEnv on the already initialised default process group: gradients,
    scalars and tensors reduced over it with ``all_reduce`` (what :func:`init` returns
    once it has joined the group; ``benchmarks/device_check.py`` calls it on a one-rank
    NCCL group)."""

    def reduce_grads(params: list[torch.nn.Parameter]) -> None:
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= world
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n

    def reduce_scalar(value: float) -> float:
        t = torch.tensor([value], dtype=torch.float64, device=dev)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t.item()) / world

    def reduce_tensor(t: torch.Tensor) -> None:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)

    return RunEnv(
        device=dev,
        rank=rank,
        world_size=world,
        reduce_grads=reduce_grads,
        reduce_scalar=reduce_scalar,
        reduce_tensor=reduce_tensor,
        barrier=dist.barrier,
        progress=progress,
    )


def env_from_launcher(device: str = "auto", backend: str = "auto") -> RunEnv | None:
    """A RunEnv on the launcher's process group, or None when this process runs alone."""
    info = detect()
    return None if info.world_size == 1 else init(info, device, backend)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    """``python -m insr_hpc.launch.ddp SPEC.json`` on every rank; exit 0 when the run is done."""
    from insr_hpc.errors import InsrError
    from insr_hpc.run import RunSpec, execute, spec_config

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: [torchrun … | srun … | mpiexec …] python -m insr_hpc.launch.ddp SPEC.json", file=sys.stderr)
        return 2
    from insr_hpc.rundir import EXIT_LOCKED, RunLocked
    from insr_hpc.runtime import STOP, Interrupted, install_stop_handlers

    install_stop_handlers()  # torchrun forwards SIGTERM to every rank: all stop after one step
    try:
        spec = RunSpec.load(argv[0])
    except InsrError as exc:
        print(f"insr-hpc: error: {exc}", file=sys.stderr)
        return 2
    cfg = spec_config(spec)
    info = detect()
    env = init(info, cfg.device, cfg.launch.ddp.backend)
    try:
        execute(spec, env=env, watch_cancel=True)
    except RunLocked as exc:
        print(f"insr-hpc: run {spec.run_id} skipped: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except (Interrupted, KeyboardInterrupt) as exc:
        print(f"insr-hpc: rank {info.rank}: run {spec.run_id} {exc or 'interrupted'}", file=sys.stderr)
        return 128 + (STOP.signum or 2)
    except Exception as exc:  # recorded in run.json by execute (rank 0)
        print(f"insr-hpc: rank {info.rank}: run {spec.run_id} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
