"""Every command the README and docs/ show names something that exists: a module, a file, a make target,
a dvc.yaml stage or a params.yaml key. Docs drift when code moves; this makes the drift a failure."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from conftest import ROOT
from ruamel.yaml import YAML

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Paths under these exist in a fresh clone; others (output/, models/bge-...) appear only after a run.
TRACKED_PREFIXES = ("src/", "scripts/", "benchmarks/", "presets/", "configs/", "docs/", "tests/", ".dvc/plots/",
                    "models/tiny-bert-zh", "models/zh-mini-embedder", "data/sample")
PROGRAMS = {"python", "dvc", "make", "cp", "git", "source", "bash"}  # a code line starting otherwise is output
INLINE_COMMAND = re.compile(r"`((?:\.venv/bin/)?(?:python|dvc|make) [^`]+)`")


def code_lines(text: str) -> list[str]:
    """Lines of indented code blocks (4 spaces after a blank line) and inline `python|dvc|make ...` spans."""
    lines, in_block, previous_blank = [], False, True
    for line in text.splitlines():
        if line.startswith("    ") and (in_block or previous_blank) and line.strip():
            lines.append(line.strip())
            in_block = True
        elif line.strip():
            in_block = False
        previous_blank = not line.strip()
    return lines + INLINE_COMMAND.findall(text)


def commands(line: str) -> list[list[str]]:
    """The shell commands on a line, split into words, comments and `&&`/`;` chains handled."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:  # prose in a code block (an unbalanced quote): not a command
        return []
    chains, current = [], []
    for word in words:
        if word in ("&&", ";", "||", "|"):
            chains.append(current)
            current = []
        else:
            current.append(word)
    return [c for c in [*chains, current] if c]


def stage_names() -> set[str]:
    stages = YAML(typ="safe").load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    names = set()
    for name, stage in stages.items():
        names.add(name)
        names.update(f"{name}@{key}" for key in stage.get("foreach", {}))
    return names


def has_param(key: str) -> bool:
    node = YAML(typ="safe").load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(encoding="utf-8"), re.MULTILINE))


def problems_in(words: list[str]) -> list[str]:
    found: list[str] = []
    program = Path(words[0]).name
    if program not in PROGRAMS:
        return found
    if program == "python" and len(words) > 2 and words[1] == "-m" and words[2].startswith("zh_retrieval."):
        module = words[2].removeprefix("zh_retrieval.")
        if not (ROOT / "src" / "zh_retrieval" / f"{module.replace('.', '/')}.py").is_file():
            found.append(f"no module zh_retrieval.{module}")
    if program == "make" and len(words) > 1 and words[1] not in make_targets():
        found.append(f"no make target {words[1]!r}")
    if program == "dvc" and words[1:2] == ["repro"]:
        targets = [w for w in words[2:] if not w.startswith("-")]
        found += [f"no dvc.yaml stage {t!r}" for t in targets if t not in stage_names()]
    for flag, value in zip(words, words[1:]):
        if flag == "-S" and "=" in value and not has_param(value.split("=", 1)[0]):
            found.append(f"no params.yaml key {value.split('=', 1)[0]!r}")
    for word in words:
        if word.startswith(TRACKED_PREFIXES) and "*" not in word and not (ROOT / word.rstrip("/")).exists():
            found.append(f"no file {word}")
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_names_what_exists(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    lines = code_lines(text)
    assert lines or doc.name == "development.md", f"{doc}: no command found; is the parser still right?"
    problems = [f"{line!r}: {problem}" for line in lines for words in commands(line) for problem in problems_in(words)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_between_pages_resolve(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    links = [target for target in re.findall(r"\]\(([^)#\s]+)", text) if "://" not in target]
    missing = [target for target in links if not (doc.parent / target).exists()]
    assert not missing, f"{doc}: broken links {missing}"


def test_the_checker_catches_a_renamed_module() -> None:
    assert problems_in(["python", "-m", "zh_retrieval.nope", "x"]) == ["no module zh_retrieval.nope"]
    assert problems_in(["python", "-m", "zh_retrieval.prepare", "x"]) == ["no module zh_retrieval.prepare"]
    assert problems_in(["python", "-m", "zh_retrieval.stages.prepare", "--check", "data/sample"]) == []
    assert problems_in(["dvc", "exp", "run", "-S", "finetune.nope=1"]) == ["no params.yaml key 'finetune.nope'"]
    assert problems_in(["dvc", "repro", "-s", "evaluate@base", "nope"]) == ["no dvc.yaml stage 'nope'"]
    assert problems_in(["python", "scripts/nope.py"]) == ["no file scripts/nope.py"]
    assert commands("make repro && dvc push   # comment") == [["make", "repro"], ["dvc", "push"]]


def test_readme_stays_short() -> None:
    size = len((ROOT / "README.md").read_text(encoding="utf-8").encode("utf-8"))
    assert size <= 8 * 1024, f"README.md is {size:,} bytes; move detail to docs/"
