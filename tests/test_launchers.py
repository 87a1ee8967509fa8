"""Which launcher started this process (insr_hpc.launch.ddp's detector classes) and the
one MPI detector (insr_hpc.mpi): precedence, and malformed variables named in one line."""

from __future__ import annotations

import os

import pytest

from insr_hpc import mpi
from insr_hpc.errors import InsrError
from insr_hpc.launch import ddp
from insr_hpc.launch.ddp import LAUNCHERS, ProcessGroupInfo, RayGang, detect

TORCHRUN = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "10.0.0.5", "MASTER_PORT": "29400"}
SLURM = {"SLURM_PROCID": "3", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "4242",
         "SLURM_JOB_NODELIST": "gpu07", "MASTER_ADDR": "gpu07"}
RAY = RayGang(2, 4, 0, "10.0.0.7", 29611).env()


def test_launchers_are_tried_in_the_documented_order():
    assert [launcher.name for launcher in LAUNCHERS] == ["ray", "torchrun", "mpi", "slurm", "single"]


def test_precedence_ray_then_torchrun_then_slurm():
    assert detect({**SLURM, **TORCHRUN, **RAY}).launcher == "ray"
    # torchrun under srun (one agent per node): torchrun's RANK is the worker's place
    assert detect({**SLURM, **TORCHRUN}) == ProcessGroupInfo("torchrun", 1, 2, 1, "10.0.0.5", 29400)
    assert detect(SLURM) == ProcessGroupInfo("slurm", 3, 8, 1, "gpu07", 24242)
    assert detect({**SLURM, "SLURM_NTASKS": "1", "SLURM_PROCID": "0"}).launcher == "single"
    assert detect({}) == ProcessGroupInfo("single", 0, 1, 0, "127.0.0.1", 0)


def test_mpi_comes_after_torchrun_and_before_slurm(monkeypatch):
    seen = []  # MPI's detector stood in for: a 2-rank world whenever it reads os.environ
    monkeypatch.setattr(ddp.MPILauncher, "detect", lambda self, env: seen.append(env) or
                        (ProcessGroupInfo("mpi", 0, 2, 0, "h", 1) if env is os.environ else None))
    for key, value in {**SLURM, **TORCHRUN}.items():
        monkeypatch.setenv(key, value)
    assert detect().launcher == "torchrun" and not seen
    for key in TORCHRUN:
        if key != "MASTER_ADDR":
            monkeypatch.delenv(key)
    assert detect().launcher == "mpi"
    assert detect(dict(os.environ)).launcher == "slurm"  # a mapping handed in: mpi4py cannot read it


def test_mpi_launcher_ignores_a_one_rank_world(monkeypatch):
    class Comm:
        def Get_size(self):
            return 1

    monkeypatch.setattr(ddp, "comm_world", lambda: Comm())
    assert ddp.MPILauncher().detect(os.environ) is None


@pytest.mark.parametrize(("env", "message"), [
    ({**TORCHRUN, "RANK": "one"}, "torchrun: RANK='one' is not an integer"),
    ({**TORCHRUN, "RANK": "2"}, "torchrun: RANK=2 must be < WORLD_SIZE=2"),
    ({**TORCHRUN, "RANK": "-1"}, "torchrun: RANK=-1 must be >= 0"),
    ({**TORCHRUN, "WORLD_SIZE": "0"}, "torchrun: WORLD_SIZE=0 must be >= 1"),
    ({**TORCHRUN, "LOCAL_RANK": "1.5"}, "torchrun: LOCAL_RANK='1.5' is not an integer"),
    ({**TORCHRUN, "MASTER_PORT": "70000"}, "torchrun: MASTER_PORT=70000 is not a TCP port (1..65535)"),
    ({**SLURM, "SLURM_PROCID": "8"}, "slurm: SLURM_PROCID=8 must be < SLURM_NTASKS=8"),
    ({**SLURM, "SLURM_NTASKS": "8(x2)"}, "slurm: SLURM_NTASKS='8(x2)' is not an integer"),
    ({**SLURM, "SLURM_JOB_ID": "12.3"}, "slurm: SLURM_JOB_ID='12.3' is not an integer"),
    ({**RAY, "INSR_RAY_RANK": "4"}, "ray: INSR_RAY_RANK=4 must be < INSR_RAY_WORLD_SIZE=4"),
    ({k: v for k, v in RAY.items() if k != "INSR_RAY_MASTER_ADDR"}, "ray: INSR_RAY_MASTER_ADDR is not set"),
])
def test_a_malformed_variable_is_one_insr_error_naming_it(env, message):
    with pytest.raises(InsrError) as err:
        detect(env)
    assert str(err.value) == message


def test_launched_by_mpi_names_the_first_marker():
    assert mpi.launched_by_mpi({}) is None
    assert mpi.launched_by_mpi({"SLURM_PROCID": "0", "RANK": "0"}) is None
    assert mpi.launched_by_mpi({"PMIX_RANK": "0", "OMPI_COMM_WORLD_RANK": "0"}) == "OMPI_COMM_WORLD_RANK"
    assert mpi.launched_by_mpi({"MPI_LOCALNRANKS": "2"}) == "MPI_LOCALNRANKS"


def test_comm_world_only_under_an_mpi_launcher(monkeypatch):
    for key in mpi.MARKERS:
        monkeypatch.delenv(key, raising=False)
    assert mpi.comm_world() is None


def test_comm_world_without_mpi4py_is_one_line(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_mpi4py(name, *args, **kwargs):
        if name.startswith("mpi4py"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mpi4py)
    monkeypatch.setenv("PMI_RANK", "0")
    with pytest.raises(InsrError, match=r"^started by an MPI launcher \(PMI_RANK is set\) but mpi4py is not installed"):
        mpi.comm_world()
    assert mpi.comm_world(required=False) is None
