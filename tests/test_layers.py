"""Imports point down: every ``insr_hpc`` import (module level or inside a function)
goes to the same layer or a lower one, as docs/architecture.md draws them."""

from __future__ import annotations

import ast
import os

from _small import REPO

# layer → its modules (a package name covers everything under it), highest first
LAYERS = [
    ("front", {"cli", "plan", "reference", "__main__"}),
    ("launch", {"launch", "slurm_entry"}),
    ("analysis", {"analysis"}),
    ("run", {"run", "catalog"}),
    ("workloads", {"pde", "recon", "workloads"}),
    ("building blocks", {"fields", "ops", "store", "store_small", "monitor", "runtime", "grid", "rundir"}),
    ("base", {"config", "registry", "errors", "mpi", "__init__"}),
]


def _layer(module: str) -> int:
    top = module.removeprefix("insr_hpc").lstrip(".").split(".")[0] or "__init__"
    for depth, (_, members) in enumerate(reversed(LAYERS)):
        if top in members:
            return depth
    raise AssertionError(f"module {module} is in no layer of docs/architecture.md")


def _imports(path: str, module: str):
    tree = ast.parse(open(path, encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("insr_hpc"):
            if node.module == "insr_hpc":
                yield from (f"insr_hpc.{a.name}" for a in node.names)
            else:
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("insr_hpc"))


def test_every_import_points_down_or_sideways():
    root = os.path.join(REPO, "insr_hpc")
    up, seen = [], 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(dirpath, name)
            module = os.path.relpath(path[:-3], REPO).replace(os.sep, ".").removesuffix(".__init__")
            for target in _imports(path, module):
                seen += 1
                if _layer(target) > _layer(module):
                    up.append(f"{module} imports {target}")
    assert seen > 200  # the walk found the package's imports
    assert not up, "imports pointing up:\n" + "\n".join(up)


def test_the_layer_table_names_real_modules():
    names = {n.removesuffix(".py") for n in os.listdir(os.path.join(REPO, "insr_hpc"))} - {"__pycache__"}
    listed = set().union(*(m for _, m in LAYERS))
    assert names <= listed, f"modules in no layer: {sorted(names - listed)}"
    assert listed - {"__main__", "__init__"} <= names, f"layers name missing modules: {sorted(listed - names)}"
