"""Every stage in dvc.yaml depends on every project module its command runs, so an edit re-runs it.

DVC only re-runs a stage when one of its listed deps changes; a module imported but not listed
(say errors.py under mine) would leave DVC reusing results of the old code. The imports are read
from the source (every `import`, at top level or inside a function), followed transitively.
"""

from __future__ import annotations

import ast
import re

import pytest
from conftest import ROOT
from ruamel.yaml import YAML

PACKAGE = "zh_retrieval"
SOURCE = ROOT / "src" / PACKAGE
STAGE_COMMAND = re.compile(rf"python -m {PACKAGE}\.(\w+)")


def project_imports(module: str) -> set[str]:
    """The project modules `module` imports directly, wherever in the file the import is."""
    tree = ast.parse((SOURCE / f"{module}.py").read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            parts = node.module.split(".")
            if len(parts) > 1:
                found.add(parts[1])
            else:  # from zh_retrieval import x
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[1] for alias in node.names if alias.name.startswith(f"{PACKAGE}."))
    return found


def closure(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(project_imports(current) - seen)
    return seen


def stages() -> dict[str, dict]:
    """dvc.yaml's stages, a foreach stage once (its `do` template: every item runs the same command)."""
    spec = YAML(typ="safe").load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return {name: stage.get("do", stage) for name, stage in spec.items()}


def test_the_import_reader_follows_imports_transitively() -> None:
    assert {"errors", "files", "mldr", "params", "prepare", "metrics"} <= closure("prepare")
    assert "encode" in closure("mine") and "encode" in project_imports("multidevice")


@pytest.mark.parametrize("stage", sorted(stages()))
def test_stage_depends_on_every_module_it_runs(stage: str) -> None:
    spec = stages()[stage]
    command = STAGE_COMMAND.search(spec["cmd"])
    assert command, f"{stage}: its command does not run a {PACKAGE} module"
    needed = {f"src/{PACKAGE}/{module}.py" for module in closure(command.group(1))} | {f"src/{PACKAGE}/__init__.py"}
    listed = set(spec["deps"])
    assert not needed - listed, f"{stage} runs these modules but dvc.yaml does not list them: {sorted(needed - listed)}"
    extra = {d for d in listed if d.startswith(f"src/{PACKAGE}/")} - needed
    assert not extra, f"{stage} lists modules it never runs (an edit to them re-runs it for nothing): {sorted(extra)}"


def test_finetune_tracks_its_deepspeed_configs() -> None:
    assert "configs" in stages()["finetune"]["deps"], "finetune.deepspeed names a file under configs/"
