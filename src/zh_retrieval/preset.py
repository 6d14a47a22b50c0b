"""Apply a preset to params.yaml: a preset holds only the values that differ from the demo's params.

    python -m zh_retrieval.preset presets/mldr-zh-bge-base.yaml              # edits params.yaml in place
    python -m zh_retrieval.preset presets/mldr-zh-bge-base.yaml --params other.yaml --out new.yaml

The result is params.yaml with the preset's values set, its comments and layout kept (ruamel's
round trip), and checked as every stage will check it before anything is written. A preset key
that params.yaml does not have is an error naming it, so a renamed param cannot be set silently
beside the one the pipeline reads.
"""

from __future__ import annotations

import argparse
import io
import logging
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from zh_retrieval.core.errors import InputError, run_stage
from zh_retrieval.core.files import atomic_file
from zh_retrieval.core.params import load_params

logger = logging.getLogger(__name__)


def _load(yaml: YAML, path: Path) -> Any:
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"))
    except YAMLError as error:
        raise InputError(path, f"not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise InputError(path, "expected a mapping of parameters")
    return data


def dotted(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as dotted keys => values ({"finetune": {"epochs": 1}} => {"finetune.epochs": 1});
    a mapping value is a section, a list or scalar a value."""
    flat = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            flat.update(dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def apply_preset(preset_file: Path, params_file: Path, out_file: Path) -> dict[str, Any]:
    """Write OUT_FILE: PARAMS_FILE with the preset's values; returns the dotted keys that were set."""
    changes = dotted(_load(YAML(typ="safe", pure=True), preset_file))
    apply_overrides(params_file, out_file, changes, source=preset_file)
    return changes


def apply_overrides(params_file: Path, out_file: Path, changes: dict[str, Any], source: Path | None = None) -> None:
    """Write OUT_FILE: PARAMS_FILE with the dotted keys of `changes` set ({"finetune.epochs": 2}), checked.

    `source` names where the changes came from in an error (default: the params file)."""
    source = source or params_file
    yaml = YAML()  # round trip: comments, order and quoting survive
    yaml.preserve_quotes = True
    yaml.width = 4096
    # `null` stays `null`: ruamel would otherwise write an empty value, which reads the same but hides it.
    yaml.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    params = _load(yaml, params_file)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = params
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf not in node:
            raise InputError(source, f"`{dotted}` is not a parameter of {params_file}",
                             fix="a preset may only set keys params.yaml already has")
        node[leaf] = value
    text = io.StringIO()
    yaml.dump(params, text)
    with atomic_file(out_file) as tmp:
        tmp.write_text(text.getvalue(), encoding="utf-8")
        try:  # the whole file checked before it replaces anything
            load_params(tmp)
        except InputError as error:
            raise InputError(source, f"applied to {params_file}, it gives invalid params: {error.problem}",
                             fix=error.fix) from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", type=Path, help="a YAML file of the values to change, e.g. presets/*.yaml")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, help="where to write the result (default: --params, in place)")
    args = parser.parse_args()
    changes = apply_preset(args.preset, args.params, args.out or args.params)
    logger.info("%s: set %d values from %s: %s", args.out or args.params, len(changes), args.preset,
                ", ".join(changes))


if __name__ == "__main__":
    run_stage(main)
