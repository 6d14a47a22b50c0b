"""dvc.yaml's stages each depend on exactly the project code their command runs, and stages stay apart.

DVC only re-runs a stage when one of its listed deps changes; a module imported but not listed
(say core/errors.py under mine) would leave DVC reusing results of the old code, and a module
listed but never run re-runs the stage for nothing. The imports are read from the source (every
`import`, at top level or inside a function), followed transitively. A directory dep stands for
every module in it, and is allowed only where the stage runs all of them.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from conftest import ROOT
from ruamel.yaml import YAML

PACKAGE = "zh_retrieval"
SOURCE = ROOT / "src"
STAGE_COMMAND = re.compile(rf"python -m ({PACKAGE}\.stages\.\w+)")


def module_file(module: str) -> Path:
    path = SOURCE / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def project_imports(module: str) -> set[str]:
    """The project modules `module` imports directly (dotted names), wherever in the file the import is."""
    tree = ast.parse(module_file(module).read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            for alias in node.names:  # `from zh_retrieval.data import mldr` imports a module
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if module_file(candidate).is_file() else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith(f"{PACKAGE}."))
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


def code_files(modules: set[str]) -> set[str]:
    """Repository paths of the modules' files; package __init__ files hold only a docstring and run nothing."""
    return {module_file(m).relative_to(ROOT).as_posix() for m in modules if module_file(m).name != "__init__.py"}


def listed_code(deps: list[str]) -> set[str]:
    """The project's code files a stage's deps cover, a directory standing for every module under it."""
    covered = set()
    for dep in deps:
        if dep.startswith(f"src/{PACKAGE}"):
            path = ROOT / dep
            files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
            covered |= {f.relative_to(ROOT).as_posix() for f in files if f.name != "__init__.py"}
    return covered


def test_the_import_reader_follows_imports_transitively() -> None:
    prepare = closure(f"{PACKAGE}.stages.prepare")
    assert {f"{PACKAGE}.core.errors", f"{PACKAGE}.data.mldr", f"{PACKAGE}.data.preparation"} <= prepare
    assert f"{PACKAGE}.retrieval.encode" in project_imports(f"{PACKAGE}.retrieval.distributed")


def test_package_init_files_only_hold_a_docstring() -> None:
    for init in (SOURCE / PACKAGE).rglob("__init__.py"):
        body = ast.parse(init.read_text(encoding="utf-8")).body
        assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant), init


def test_no_stage_imports_another_stage() -> None:
    """A stage that is also a library would re-run whatever imports it when only its command line changed."""
    for path in sorted((SOURCE / PACKAGE / "stages").glob("*.py")):
        if path.name == "__init__.py":
            continue
        module = f"{PACKAGE}.stages.{path.stem}"
        others = {m for m in closure(module) if m.startswith(f"{PACKAGE}.stages.") and m != module}
        assert not others, f"{module} imports {sorted(others)}"


def test_every_stage_module_is_a_stage_of_the_same_name() -> None:
    modules = {p.stem for p in (SOURCE / PACKAGE / "stages").glob("*.py") if p.name != "__init__.py"}
    commands = {name: STAGE_COMMAND.search(spec["cmd"]) for name, spec in stages().items()}
    assert all(commands.values()), [name for name, found in commands.items() if not found]
    assert {name: found.group(1).rsplit(".", 1)[1] for name, found in commands.items()} == {s: s for s in stages()}
    assert modules == set(stages())


@pytest.mark.parametrize("stage", sorted(stages()))
def test_stage_depends_on_every_module_it_runs(stage: str) -> None:
    spec = stages()[stage]
    needed = code_files(closure(STAGE_COMMAND.search(spec["cmd"]).group(1)))
    covered = listed_code(spec["deps"])
    missing = sorted(needed - covered)
    assert not missing, f"{stage} runs these modules but dvc.yaml does not list them: {missing}"
    assert not covered - needed, \
        f"{stage} lists modules it never runs (an edit to them re-runs it for nothing): {sorted(covered - needed)}"


def test_finetune_tracks_its_deepspeed_configs() -> None:
    assert "configs" in stages()["finetune"]["deps"], "finetune.deepspeed names a file under configs/"
