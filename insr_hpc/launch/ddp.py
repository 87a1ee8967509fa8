"""Data-parallel runs: a process group from whatever launched us, and the RunEnv on it.

Launchers recognised, in this order:

* **torchrun** — ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``;
* **MPI** (``mpiexec -n N``) — rank and size from mpi4py; rank 0 picks the master
  address and a free port and broadcasts them;
* **Slurm** (``srun`` with several tasks) — ``SLURM_PROCID``, ``SLURM_NTASKS``,
  ``SLURM_LOCALID``; master = first host of ``SLURM_JOB_NODELIST``, port derived from
  the job id (override with ``MASTER_PORT``);
* **Ray** (the ray backend's gang of rank tasks in a placement group) — ``INSR_RAY_RANK``,
  ``INSR_RAY_WORLD_SIZE``, ``INSR_RAY_LOCAL_RANK``, ``INSR_RAY_MASTER_ADDR``,
  ``INSR_RAY_MASTER_PORT``, set by each rank task from :class:`RayGang` (rank 0's node
  address and a free port there, found by a probe task in rank 0's bundle).

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
from dataclasses import dataclass

import torch
import torch.distributed as dist

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


def _env_int(env, key: str) -> int:
    return int(env[key])


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
        return cls(
            _env_int(env, f"{cls.PREFIX}RANK"), _env_int(env, f"{cls.PREFIX}WORLD_SIZE"),
            _env_int(env, f"{cls.PREFIX}LOCAL_RANK"), env[f"{cls.PREFIX}MASTER_ADDR"],
            _env_int(env, f"{cls.PREFIX}MASTER_PORT"),
        )

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


def _mpi_rank_size() -> tuple[int, int] | None:
    # Launched by an MPI starter (hydra/mpich, Open MPI, PMIx)? Only then import mpi4py.
    markers = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MPI_LOCALRANKID")
    found = [k for k in markers if k in os.environ]
    if not found:
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        from insr_hpc.errors import InsrError

        raise InsrError(f"started by an MPI launcher ({found[0]} is set) but mpi4py is not installed "
                        f"(pip install 'insr-hpc[cluster]')") from None

    comm = MPI.COMM_WORLD
    return comm.Get_rank(), comm.Get_size()


def detect(env=None) -> ProcessGroupInfo:
    """Read the launcher's variables (``env`` defaults to ``os.environ``)."""
    env = os.environ if env is None else env
    gang = RayGang.from_env(env)
    if gang is not None:
        return gang.info()
    if "RANK" in env and "WORLD_SIZE" in env and "MASTER_ADDR" in env:
        return ProcessGroupInfo(
            "torchrun", _env_int(env, "RANK"), _env_int(env, "WORLD_SIZE"), int(env.get("LOCAL_RANK", 0)),
            env["MASTER_ADDR"], int(env.get("MASTER_PORT", 29500)),
        )
    mpi = _mpi_rank_size() if env is os.environ else None
    if mpi is not None and mpi[1] > 1:
        return _mpi_info(*mpi)
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        hosts = expand_nodelist(env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST", "localhost"))
        job = int(env.get("SLURM_JOB_ID", "0"))
        port = int(env.get("MASTER_PORT", 20000 + job % 20000))
        return ProcessGroupInfo(
            "slurm", _env_int(env, "SLURM_PROCID"), _env_int(env, "SLURM_NTASKS"), int(env.get("SLURM_LOCALID", 0)),
            env.get("MASTER_ADDR") or node_address(hosts[0]), port,
        )
    return ProcessGroupInfo("single", 0, 1, 0, "127.0.0.1", 0)


def _mpi_info(rank: int, size: int) -> ProcessGroupInfo:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    local = comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()
    addr_port = None
    if rank == 0:
        addr = os.environ.get("MASTER_ADDR") or _routable_address()
        with socket.socket() as s:  # a free port on rank 0's host
            s.bind(("", 0))
            addr_port = (addr, s.getsockname()[1])
    addr, port = comm.bcast(addr_port, root=0)
    return ProcessGroupInfo("mpi", rank, size, local, addr, port)


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
    from insr_hpc.catalog import build_config
    from insr_hpc.run import RunSpec, execute

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: [torchrun … | srun … | mpiexec …] python -m insr_hpc.launch.ddp SPEC.json", file=sys.stderr)
        return 2
    from insr_hpc.rundir import EXIT_LOCKED, RunLocked
    from insr_hpc.runtime import STOP, Interrupted, install_stop_handlers

    install_stop_handlers()  # torchrun forwards SIGTERM to every rank: all stop after one step
    spec = RunSpec.load(argv[0])
    cfg = build_config(spec.config)
    info = detect()
    env = init(info, cfg.device, cfg.launch.ddp.backend)
    try:
        execute(spec, env=env)
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
