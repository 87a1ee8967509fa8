"""Hostile and broken config input (issue 23): every case is refused before anything
expands, with one ``insr-hpc: error:`` line naming the file or key, exit 2, quickly, and
nothing created. Each file is generated here in tmp_path (no big files in the repo).

Also: no control character reaches an sbatch script (the values that would go there are
refused at config time), and the old Slurm keys for nodes and ranks (issue 24)."""

from __future__ import annotations

import codecs
import os
import time

import pytest
import yaml
from _small import SMALL_ADVECTION

import insr_hpc.launch  # noqa: F401  (imported up front: the time bounds measure the checks, not imports)
import insr_hpc.plan  # noqa: F401
from insr_hpc.catalog import load_config
from insr_hpc.cli import main
from insr_hpc.config.load import MAX_BYTES_ENV, MAX_DEPTH
from insr_hpc.errors import ConfigError

LIMIT = 1 << 20  # the default size limit of a config file
NODES = LIMIT // 10  # the default node budget (one node per 10 bytes of the limit)
BOUND_S = 5.0  # generous for a loaded 2-core CI machine; every case takes well under 1 s here


def _base(out) -> str:
    return yaml.safe_dump(dict(SMALL_ADVECTION, output={"root": str(out)}))


def _refused(tmp_path, capsys, args: list[str]) -> str:
    """Run the CLI in this process: exit 2, one ``insr-hpc: error:`` line, within BOUND_S,
    nothing under output.root. Returns the line."""
    capsys.readouterr()
    start = time.perf_counter()
    code = main(args)
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("insr-hpc: error: "), err[:2000]
    assert elapsed < BOUND_S, f"took {elapsed:.2f} s: {lines[0][:200]}"
    assert not (tmp_path / "out").exists()
    return lines[0]


def _file(tmp_path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _laughs(indent: str, mapping: bool = False) -> str:
    """Anchors a0..a9, each ten copies of the one before: 10**10 leaves written out."""
    if mapping:
        lines = [f"{indent}a0: &a0 {{" + ", ".join(f"k{j}: lol" for j in range(10)) + "}"]
        lines += [f"{indent}a{i}: &a{i} {{" + ", ".join(f"k{j}: *a{i - 1}" for j in range(10)) + "}"
                  for i in range(1, 10)]
    else:
        lines = [f"{indent}a0: &a0 [" + ", ".join(["lol"] * 10) + "]"]
        lines += [f"{indent}a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


# label → (the file's bytes from its base text, a fragment of the error after the file's name)
FILES = {
    "50 MB string under an unknown key": (lambda b: (b + "junk: " + "x" * (50 << 20) + "\n").encode(),
                                          " bytes, larger than 1048576 bytes (the limit; INSR_HPC_MAX_CONFIG_BYTES"),
    "50 MB of comments": (lambda b: (b + ("# " + "c" * 98 + "\n") * (1 << 19)).encode(),
                          " bytes, larger than 1048576 bytes"),
    "0xff bytes": (lambda b: b.encode() + b"\xff\xfe junk\n", "': not UTF-8: byte 0xff at offset {n}"),
    "latin-1": (lambda b: (b + "# caf\u00e9\n").encode("latin-1"), "': not UTF-8: byte 0xe9 at offset {n+5}"),
    "utf-16 with bom": (lambda b: b.encode("utf-16"), "': starts with a UTF-16 byte order mark"),
    "utf-32 with bom": (lambda b: b.encode("utf-32"), "': starts with a UTF-32 byte order mark"),
    "utf-16 without bom": (lambda b: b.encode("utf-16-le"), "': control character U+0000 at offset 1 (line 1) "
                                                            "(UTF-16 text? save it as UTF-8)"),
    "control character": (lambda b: (b + "junk: a\x1bb\n").encode(), "': control character U+001B at offset {n+7}"),
    "billion laughs under an unknown key": (lambda b: (b + "junk:\n" + _laughs("  ")).encode(),
                                            f"': aliases expand too far: more than {NODES} nodes"),
    "billion laughs under sweep.grid": (lambda b: (b + "sweep:\n  grid:\n" + _laughs("    ")).encode(),
                                        f"': aliases expand too far: more than {NODES} nodes"),
    "billion laughs as a value": (lambda b: (b + "junk:\n" + _laughs("  ") + "seed: *a9\n").encode(),
                                  f"': aliases expand too far: more than {NODES} nodes"),
    "billion laughs of mappings": (lambda b: (b + "junk:\n" + _laughs("  ", mapping=True)).encode(),
                                   f"': aliases expand too far: more than {NODES} nodes"),
    "alias inside its own anchor": (lambda b: (b + "junk: &r [1, *r]\n").encode(),
                                    "': alias *r lies inside its own anchor &r"),
    "5000 nested lists": (lambda b: (b + "junk: " + "[" * 5000 + "]" * 5000 + "\n").encode(),
                          f"': nested deeper than {MAX_DEPTH} levels"),
    "5000 nested flow mappings": (lambda b: (b + "junk: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n").encode(),
                                  f"': nested deeper than {MAX_DEPTH} levels"),
    "100 nested block mappings": (lambda b: (b + "".join(" " * i + "a:\n" for i in range(100))).encode(),
                                  f"': nested deeper than {MAX_DEPTH} levels at line"),
    "too many nodes": (lambda b: (b + "junk: [" + ",".join(["0"] * 150_000) + "]\n").encode(),
                       f"': more than {NODES} nodes (values, lists, mappings)"),
    "an integer of 5000 digits": (lambda b: (b + "seed: " + "9" * 5000 + "\n").encode(),
                                  "': Exceeds the limit (4300 digits) for integer string conversion"),
}


@pytest.mark.parametrize("label", FILES)
def test_hostile_file_is_refused_fast_naming_the_file(tmp_path, capsys, label):
    make, fragment = FILES[label]
    base = _base(tmp_path / "out")
    n = len(base.encode())
    path = _file(tmp_path, "cfg.yaml", make(base))
    fragment = fragment.replace("{n+5}", str(n + 5)).replace("{n+7}", str(n + 7)).replace("{n}", str(n))
    for command in (["submit", path, "--dry-run"], ["run", path]):
        line = _refused(tmp_path, capsys, command)
        assert line.startswith(f"insr-hpc: error: config file '{path}'"), line
        assert fragment in line, line


def test_size_limit_names_the_size_and_the_environment_raises_it(tmp_path, capsys, monkeypatch):
    base = _base(tmp_path / "out")
    path = _file(tmp_path, "cfg.yaml", (base + "# " + "c" * 3000 + "\n").encode())
    size = os.path.getsize(path)
    monkeypatch.setenv(MAX_BYTES_ENV, str(size - 1))
    line = _refused(tmp_path, capsys, ["submit", path, "--dry-run"])
    assert line == (f"insr-hpc: error: config file '{path}' is {size} bytes, larger than {size - 1} bytes "
                    f"(the limit; {MAX_BYTES_ENV}=BYTES raises it)")
    monkeypatch.setenv(MAX_BYTES_ENV, str(size))
    assert main(["submit", path, "--dry-run"]) == 0
    monkeypatch.setenv(MAX_BYTES_ENV, "lots")
    line = _refused(tmp_path, capsys, ["submit", path, "--dry-run"])
    assert line == f"insr-hpc: error: {MAX_BYTES_ENV}: expected a positive number of bytes, got 'lots'"


def test_a_utf8_bom_is_fine(tmp_path, capsys):
    path = _file(tmp_path, "cfg.yaml", codecs.BOM_UTF8 + _base(tmp_path / "out").encode())
    assert main(["submit", path, "--dry-run"]) == 0
    assert load_config(path).name == "adv"


OVERRIDES = {
    "key nested 5000 levels": (["a." * 5000 + "b=1"], f"key nested deeper than {MAX_DEPTH} levels"),
    "value nested 5000 levels": (["junk=" + "[" * 5000 + "]" * 5000], f"value nested deeper than {MAX_DEPTH} levels"),
    "mapping value nested 5000 levels": (["junk=" + "{a: " * 5000 + "1" + "}" * 5000],
                                         f"value nested deeper than {MAX_DEPTH} levels"),
    "an integer of 5000 digits": (["seed=" + "9" * 5000], "Exceeds the limit (4300 digits)"),
    "an override over the size limit": (["junk=" + "x" * (LIMIT + 1)], f"bytes, larger than {LIMIT}"),
    "1000 x 1000 grid": (["sweep.grid.seed=[" + ",".join(map(str, range(1000))) + "]",
                          "sweep.grid.time.steps=[" + ",".join(map(str, range(1, 1001))) + "]"],
                         "sweep: 1000000 points (1000 × 1000), more than sweep.max_points = 100000"),
    "grid times zip over the limit": (["sweep.max_points=11", "sweep.grid.seed=[0,1,2]",
                                       "sweep.zip.time.steps=[1,2,3,4]", "sweep.zip.time.dt=[0.1,0.2,0.3,0.4]"],
                                      "sweep: 12 points (3 × 4 zip rows), more than sweep.max_points = 11"),
    "max_points not a number": (["sweep.max_points=many", "sweep.grid.seed=[0,1]"],
                                "sweep.max_points: expected a positive integer, got 'many'"),
    "max_points zero": (["sweep.max_points=0"], "sweep.max_points: expected a positive integer, got 0"),
}


@pytest.mark.parametrize("label", OVERRIDES)
def test_hostile_override_is_refused_fast_naming_it(tmp_path, capsys, label):
    extra, fragment = OVERRIDES[label]
    path = _file(tmp_path, "cfg.yaml", _base(tmp_path / "out").encode())
    line = _refused(tmp_path, capsys, ["submit", path, *extra, "--dry-run"])
    assert fragment in line, line
    if "nested" in label:
        assert line.startswith(f"insr-hpc: error: override '{extra[0][:4]}"), line


def test_the_grid_is_counted_before_any_point_exists(tmp_path, capsys, monkeypatch):
    """1000 × 1000 points from a file: refused from the list lengths alone."""
    from insr_hpc.config import sweep as sweep_module

    def no_points(*args, **kwargs):
        raise AssertionError("a point was made")

    monkeypatch.setattr(sweep_module, "SweepPoint", no_points)
    data = dict(SMALL_ADVECTION, output={"root": str(tmp_path / "out")},
                sweep={"grid": {"seed": list(range(1000)), "time.steps": list(range(1, 1001))}})
    path = _file(tmp_path, "cfg.yaml", yaml.safe_dump(data).encode())
    line = _refused(tmp_path, capsys, ["submit", path, "--dry-run"])
    assert line == ("insr-hpc: error: sweep: 1000000 points (1000 × 1000), more than sweep.max_points = 100000; "
                    "shrink the sweep or raise sweep.max_points")


def test_max_points_can_be_raised_and_labels_follow_positions(tmp_path, capsys):
    data = dict(SMALL_ADVECTION, output={"root": str(tmp_path / "out")},
                sweep={"grid": {"seed": [0, 1, 2], "time.steps": [1, 2, 3, 4]}, "max_points": 12,
                       "labels": {"seed": ["a", "b", "c"]}})
    path = _file(tmp_path, "cfg.yaml", yaml.safe_dump(data).encode())
    assert main(["submit", path, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("12 run(s)") and "r011-seed=c_steps=4" in out
    assert not (tmp_path / "out").exists()


# ---- strings that reach an sbatch script, a shell or a command line ---------------------

HOSTILE_VALUES = [
    ('name="a\\nb"', "name", "U+000A"),
    ("name=a b", "name", "must keep to the characters A-Z a-z 0-9 . _ - + = ,"),
    ("name=-x", "name", "must not start with '-'"),
    ('launch.slurm.account="proj\\n#SBATCH --uid=0"', "launch.slurm.account", "U+000A"),
    ('launch.slurm.qos="normal\\r#SBATCH --x"', "launch.slurm.qos", "U+000D"),
    ('launch.slurm.partition="gpu\\u2028x"', "launch.slurm.partition", "U+2028"),
    ('launch.slurm.extra_sbatch=["constraint=a\\n#SBATCH --uid=0"]', "launch.slurm.extra_sbatch[0]", "U+000A"),
    ('launch.slurm.extra_sbatch=["exclusive","mail type=END"]', "launch.slurm.extra_sbatch[1]",
     "expected an sbatch option name"),
    ('launch.slurm.setup=["module load cuda","rm -rf x\\u0085"]', "launch.slurm.setup[1]", "U+0085"),
    ('launch.ray.address="10.0.0.1:6379\\nx"', "launch.ray.address", "U+000A"),
    ('output.root="runs\\u0000x"', "output.root", "U+0000"),
    ('output.root="runs\\u202ex"', "output.root", "U+202E"),  # a format character (right-to-left override)
]


@pytest.mark.parametrize("override, key, fragment", HOSTILE_VALUES, ids=[h[1] + ":" + h[2] for h in HOSTILE_VALUES])
def test_control_characters_are_refused_at_config_time(tmp_path, capsys, override, key, fragment):
    path = _file(tmp_path, "cfg.yaml", _base(tmp_path / "out").encode())
    for backend in ("local", "slurm"):  # refused before any backend is asked
        line = _refused(tmp_path, capsys, ["submit", path, override, "--dry-run", "--backend", backend])
        assert line.startswith(f"insr-hpc: error: {key}: "), line
        assert fragment in line, line


def test_control_characters_in_the_file_are_refused_too(tmp_path, capsys):
    data = dict(SMALL_ADVECTION, output={"root": str(tmp_path / "out")},
                launch={"slurm": {"extra_sbatch": ["exclusive", "constraint=a\n#SBATCH --uid=0"]}})
    path = _file(tmp_path, "cfg.yaml", yaml.safe_dump(data).encode())
    line = _refused(tmp_path, capsys, ["submit", path, "--dry-run"])
    assert line == ("insr-hpc: error: launch.slurm.extra_sbatch[1]: must not contain a control character "
                    "(U+000A at position 12), got 'constraint=a\\n#SBATCH --uid=0'")


def test_an_unknown_key_with_a_newline_is_still_one_line(tmp_path, capsys):
    path = _file(tmp_path, "cfg.yaml", (_base(tmp_path / "out") + '"bad\\nkey": 1\n').encode())
    line = _refused(tmp_path, capsys, ["submit", path, "--dry-run"])
    assert line.startswith("insr-hpc: error: bad\\nkey: unknown key"), line


def _benign_launch():
    from insr_hpc.config.schema import LaunchConfig, SlurmConfig

    launch = LaunchConfig()
    launch.slurm = SlurmConfig(partition="gpu", time_min=30, cpus_per_task=2, gpus_per_node=1, account="proj-1",
                               qos="normal", extra_sbatch=["constraint=a100"], setup=["module load cuda/12.4"])
    launch.ddp.nodes, launch.ddp.nproc_per_node = 2, 4
    return launch


def test_sbatch_text_of_a_benign_config_has_every_directive():
    pytest.importorskip("submitit")
    from insr_hpc.launch.slurm import sbatch_text

    text = sbatch_text(_benign_launch(), "/scratch/sweep/slurm")
    directives = [line for line in text.splitlines() if line.startswith("#SBATCH")]
    for expected in ("--time=30", "--output=/scratch/sweep/slurm/%j_0_log.out", "--signal=USR2@90", "--nodes=2",
                     "--ntasks-per-node=4", "--job-name=insr-hpc", "--cpus-per-task=2", "--gpus-per-node=1",
                     "--partition=gpu", "--account=proj-1", "--qos=normal", "--constraint=a100"):
        assert f"#SBATCH {expected}" in directives, (expected, directives)
    assert "module load cuda/12.4" in text.splitlines()
    assert all(line.isprintable() for line in text.splitlines())


# ---- one key per meaning: launch.ddp.nodes / nproc_per_node (issue 24) --------------------


def test_old_slurm_keys_still_work_with_one_note(tmp_path, capsys):
    """The old keys, in the file and as an override, are read as the ddp keys; one note."""
    data = dict(SMALL_ADVECTION, output={"root": str(tmp_path / "out")}, launch={"slurm": {"tasks_per_node": 2}})
    path = _file(tmp_path, "cfg.yaml", yaml.safe_dump(data).encode())
    capsys.readouterr()
    assert main(["submit", path, "launch.slurm.nodes=1", "sweep.grid.seed=[0,1]", "--dry-run"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["insr-hpc: note: launch.slurm.nodes, launch.slurm.tasks_per_node are deprecated, read as "
                   "launch.ddp.nodes, launch.ddp.nproc_per_node: write those instead"], err
    notes: list[str] = []
    cfg = load_config(path, ["launch.slurm.nodes=3"], notes=notes)
    assert (cfg.launch.ddp.nodes, cfg.launch.ddp.nproc_per_node) == (3, 2)
    assert not hasattr(cfg.launch.slurm, "nodes") and not hasattr(cfg.launch.slurm, "tasks_per_node")
    assert len(notes) == 1
    from insr_hpc.launch.slurm import executor_parameters

    params = executor_parameters(cfg.launch)
    assert (params["nodes"], params["ntasks_per_node"]) == (3, 2)


def test_old_and_new_key_with_different_values_is_an_error(tmp_path, capsys):
    data = dict(SMALL_ADVECTION, output={"root": str(tmp_path / "out")}, launch={"slurm": {"nodes": 2}})
    path = _file(tmp_path, "cfg.yaml", yaml.safe_dump(data).encode())
    line = _refused(tmp_path, capsys, ["submit", path, "launch.ddp.nodes=3", "--dry-run"])
    assert line == ("insr-hpc: error: launch.slurm.nodes: is the old name of launch.ddp.nodes, which is set to 3, "
                    "not 2; give only launch.ddp.nodes")
    # swept: the point that disagrees is named, as a full build of it would
    line = _refused(tmp_path, capsys, ["submit", path, "sweep.grid.launch.ddp.nodes=[2,3]", "--dry-run"])
    assert line.startswith("insr-hpc: error: launch.slurm.nodes: is the old name of launch.ddp.nodes"), line
    assert "(sweep point r001-nodes=3)" in line
    # equal values are one meaning given twice: fine
    cfg = load_config(path, ["launch.ddp.nodes=2"], notes=[])
    assert cfg.launch.ddp.nodes == 2


def test_a_resolved_spec_from_before_the_rename_keeps_its_resources():
    """A RunSpec written by an older version holds both keys; its runs resume with the
    resources they had then (the larger value)."""
    from insr_hpc.catalog import build_config
    from insr_hpc.config import config_to_dict

    path = os.path.join(os.path.dirname(__file__), "..", "configs", "advection.yaml")
    old = config_to_dict(load_config(path))
    old["launch"]["slurm"].update(nodes=1, tasks_per_node=4)
    old["launch"]["ddp"].update(nodes=2, nproc_per_node=1)
    cfg = build_config(old)
    assert (cfg.launch.ddp.nodes, cfg.launch.ddp.nproc_per_node) == (2, 4)
    with pytest.raises(ConfigError, match="launch.slurm.nodes: is the old name of launch.ddp.nodes, which is set to 2"):
        from insr_hpc.catalog import CATALOG
        from insr_hpc.config.load import build_config as strict

        strict(old, CATALOG)
