"""A CLI that answers at once (issue 21): help, version, every bad input, ``show``,
``submit --dry-run``, ``status``, ``cancel`` and ``verify`` never import torch, and
every malformed override is one line, exit 2. Each no-torch check runs the command in
a fresh interpreter (``insr_hpc.cli.main(argv)`` in-process there, then
``'torch' in sys.modules``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from _small import REPO, SMALL_ADVECTION, write_config
from insr_hpc.cli import main

_PROBE = """
import io, json, sys, contextlib
from insr_hpc.cli import main
argv = json.loads(sys.argv[1])
out, err = io.StringIO(), io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own --help
        rc = exc.code
print(json.dumps({"rc": rc, "torch": "torch" in sys.modules, "out": out.getvalue(), "err": err.getvalue()}))
"""


def _probe(argv: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(argv)], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """A small admitted sweep (3 runs, pending; made in another interpreter)."""
    root = tmp_path_factory.mktemp("cli_fast")
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    code = ("from insr_hpc.plan import plan_runs\nfrom insr_hpc.run import admit\n"
            f"p = plan_runs('configs/advection.yaml', ['output.root={root}', 'sweep.grid.seed=[0,1,2]'])\n"
            "admit(p.specs, 'local'); print(p.sweep_dir)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().splitlines()[-1]


def test_importing_the_cli_and_help_import_no_torch():
    env = dict(os.environ, PYTHONPATH=REPO)
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "insr_hpc", "--help"], capture_output=True,
                         text=True, env=env, cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}
    assert "insr_hpc.cli" in imported
    assert not {m for m in imported if m == "torch" or m.startswith("torch.")}, "torch imported by --help"


@pytest.mark.parametrize("argv, rc", [
    (["--help"], 0),
    (["--version"], 0),
    (["submit", "configs/advection.yaml", "--dry-run", "optim.lrr=1"], 2),  # unknown key
    (["submit", "configs/advection.yaml", "--dry-run", "time.dt=abc"], 2),  # wrong type
    (["submit", "configs/advection.yaml", "--dry-run", "time.dt=-1"], 2),  # bad value
    (["submit", "configs/elasticity.yaml", "--dry-run", "integrator.name=midpoint"], 2),  # case × integrator
    (["submit", "configs/advection.yaml", "--dry-run", "network.model=sirne"], 2),  # unknown registry name
    (["submit", "configs/advection.yaml", "--dry-run", "a[=1"], 2),  # malformed override
    (["run", "configs/euler_sweep.yaml"], 2),  # several points, no --index
    (["submit", "configs/euler_sweep.yaml", "--dry-run"], 0),
    (["submit", "configs/advection.yaml", "--dry-run"], 0),
    (["submit", "configs/reconstruct_sweep.yaml", "--dry-run"], 0),
    (["show", "configs/euler_sweep.yaml", "--index", "3"], 0),
])
def test_no_torch(argv, rc):
    got = _probe(argv)
    assert got["rc"] == rc, got["err"]
    assert not got["torch"], f"{argv} imported torch"
    if rc == 2:
        assert len(got["err"].strip().splitlines()) == 1 and got["err"].startswith("insr-hpc: error: "), got["err"]


@pytest.mark.parametrize("command", ["status", "verify", "cancel"])
def test_no_torch_on_a_sweep_directory(sweep_dir, command):
    got = _probe([command, sweep_dir])
    assert got["rc"] in (0, 1, 2), got
    assert not got["torch"], f"{command} imported torch: {got['err']}"
    if command == "status":
        assert got["rc"] == 0 and "r002-seed=2" in got["out"], got


def test_version_names_the_package_and_commit(capsys):
    assert main(["--version"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("insr-hpc 0.1.0"), line
    if os.path.exists(os.path.join(REPO, ".git")):
        assert "(git " in line, line


def test_show_prints_the_validated_config_of_one_point(tmp_path, capsys):
    import yaml

    path = write_config(tmp_path, dict(SMALL_ADVECTION, output={"root": str(tmp_path / "out")},
                                       sweep={"grid": {"seed": [0, 1, 2]}}))
    assert main(["show", path, "--index", "2", "time.dt=0.025"]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert data["seed"] == 2 and data["time"]["dt"] == 0.025 and data["problem"]["speed"] == 0.25
    assert not (tmp_path / "out").exists()  # nothing written
    for argv, fragment in ((["show", path], "the sweep has 3 runs; pick one with --index 0..2"),
                           (["show", path, "--index", "3"], "--index: expected 0..2, got 3"),
                           (["show", path, "--index", "-1"], "--index: expected 0..2, got -1")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err == f"insr-hpc: error: {err.removeprefix('insr-hpc: error: ')}" and fragment in err, err
        assert len(err.splitlines()) == 1


# override → a fragment of its one-line error
MALFORMED = {
    "a[=1": "malformed key 'a['",
    "a.b[=1": "malformed key 'a.b['",
    "time.=1": "malformed key 'time.'",
    "time..dt=1": "malformed key 'time..dt'",
    "a b=1": "malformed key 'a b'",
    "time.dt=[1,2": "override 'time.dt': not a valid YAML value: did not find expected ',' or ']'",
    "time.dt={a: 1": "override 'time.dt': not a valid YAML value: did not find expected ',' or '}'",
    "time.dt={{a}}": "override 'time.dt': not a valid YAML value: found unhashable key",
    "time.dt=}": "override 'time.dt': not a valid YAML value",
    "time.dt=]": "override 'time.dt': not a valid YAML value",
    "time.dt='x": "override 'time.dt': not a valid YAML value: found unexpected end of stream",
    "sweep.grid={seed:[0..99]}": "override 'sweep.grid': not a valid YAML value",
    "time.dt==1": "time.dt: expected float, got '=1'",
    "=1": "override '=1': expected key=value",
    "=": "override '=': expected key=value",
    "==": "override '==': expected key=value",
    ".x=1": "expected key=value",
    "time.dt": "expected key=value",
    "time.dt=": "time.dt: ",
    "time.dt=\udcff": "override 'time.dt=\\xff': not UTF-8: byte 0xff at offset 8",
    "\udcfe=1": "override '\\xfe=1': not UTF-8: byte 0xfe at offset 0",
    "time.dt=1\x00": "override 'time.dt': ",
    "time.dt=&a [*a]": "recursive structure",
    "seed=" + "9" * 5000: "Exceeds the limit (4300 digits)",
}


@pytest.mark.parametrize("override", MALFORMED, ids=[ascii(k)[:40] for k in MALFORMED])
def test_a_malformed_override_is_one_line_exit_2(tmp_path, capsys, override):
    path = write_config(tmp_path, dict(SMALL_ADVECTION, output={"root": str(tmp_path / "out")}))
    capsys.readouterr()
    assert main(["submit", path, "--dry-run", override]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("insr-hpc: error: "), err
    assert MALFORMED[override] in lines[0], lines[0]
    assert not (tmp_path / "out").exists()


def test_non_utf8_argv_from_the_shell_is_one_line(tmp_path):
    """Bytes that are not UTF-8 on a real command line (os.fsencode surrogates in argv)."""
    path = write_config(tmp_path, dict(SMALL_ADVECTION, output={"root": str(tmp_path / "out")}))
    env = dict(os.environ, PYTHONPATH=REPO, LC_ALL="C.UTF-8")
    res = subprocess.run([sys.executable, "-m", "insr_hpc", "submit", path, "--dry-run", b"time.dt=\xff\xfe"],
                         capture_output=True, env=env, cwd=REPO, timeout=120)
    assert res.returncode == 2, res.stderr
    assert res.stderr.decode() == "insr-hpc: error: override 'time.dt=\\xff\\xfe': not UTF-8: byte 0xff at offset 8\n"


def test_declared_entries_match_their_implementations():
    """Each declaration (params dataclass, capabilities) says what the implementation
    it names holds; importing one binds it to the declared entry."""
    from insr_hpc.catalog import CATALOG
    from insr_hpc.fields.registry import MODELS
    from insr_hpc.launch.base import BACKENDS
    from insr_hpc.pde.cases import CASES
    from insr_hpc.pde.integrators import INTEGRATORS
    from insr_hpc.pde.optimizers import OPTIMIZERS
    from insr_hpc.workloads import WORKLOADS

    for reg in (CASES, INTEGRATORS, OPTIMIZERS, MODELS):
        for name in reg.names():
            assert reg.get(name).Params is reg.params(name), (reg.kind, name)
    for name in CASES.names():
        kind = CASES.get(name).term_kind
        assert CASES.capabilities(name)["term_kind"] == (kind.__name__ if kind else None), name
    for name in INTEGRATORS.names():
        assert INTEGRATORS.capabilities(name)["accepts"] == INTEGRATORS.get(name).accepts.__name__, name
    for name in WORKLOADS.names():
        declared = (CATALOG.config_class(name), CATALOG.tagged_sections(name))
        entry = WORKLOADS.get(name)
        assert declared == (entry.config_class, entry.tagged_sections), name
    for name in BACKENDS.names():
        assert BACKENDS.get(name).name == name


def test_a_declared_entry_is_imported_on_first_get_and_errors_stay_word_for_word():
    from insr_hpc.errors import ConfigError
    from insr_hpc.registry import Registry

    reg = Registry("widget", "thing.name", capabilities=("shiny",))
    reg.declare("json", "json:JSONDecoder", params=dict, shiny=True)
    assert "json" in reg and reg.names() == ["json"] and not reg.loaded("json")
    assert reg.has("json", "shiny") and reg.params("json") is dict and not reg.loaded("json")
    import json as json_module

    assert reg.get("json") is json_module.JSONDecoder and reg.loaded("json")
    with pytest.raises(ConfigError, match=r"^thing.name: unknown widget 'jsno' \(known: json\); did you mean 'json'\?$"):
        reg.get("jsno")
    with pytest.raises(ValueError, match="registered twice"):
        reg.declare("json", "json:JSONEncoder")
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("json")(object)
