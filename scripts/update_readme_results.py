"""Copy metrics/report.md (the report stage's output) into README.md between its report markers.

    python scripts/update_readme_results.py

The test figures, up to their split by evidence position: that split and the dev figures stay in
metrics/report.md (the README's size is capped; the README's own tables read dev for its
choices, and docs/evaluation.md discusses the split).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- report -->\n", "<!-- /report -->"
LEFT_OUT = "\nBy where each test query's evidence starts"  # and the dev section after it


def main() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    report = (ROOT / "metrics" / "report.md").read_text(encoding="utf-8").removeprefix("# Results\n")
    report = report.split(LEFT_OUT, 1)[0].strip()
    before, rest = readme.split(START, 1)
    _, after = rest.split(END, 1)
    (ROOT / "README.md").write_text(f"{before}{START}{report}\n{END}{after}", encoding="utf-8")


if __name__ == "__main__":
    main()
