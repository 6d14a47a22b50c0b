"""Build the HTML template `dvc plots show` fills, with vega, vega-lite and vega-embed inside it.

    npm pack vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2
    python scripts/build_plots_template.py vega-5.20.2.tgz vega-lite-5.2.0.tgz vega-embed-6.18.2.tgz \
        .dvc/plots/index.html

DVC's own template loads these three libraries from a CDN, so offline (where this project's
machines are) `dvc_plots/index.html` opens blank. `.dvc/config` points `plots.html_template` at
the file this writes; the versions are the ones dvc-render's vega renderer asks for. The scripts
are inlined, not linked, so the page works wherever `dvc plots show -o DIR` puts it. Each library
is BSD-3-Clause; its licence text goes into the page beside it.
"""

from __future__ import annotations

import argparse
import tarfile
from pathlib import Path

LIBRARIES = (  # (npm package, its minified browser build inside the tarball)
    ("vega", "package/build/vega.min.js"),
    ("vega-lite", "package/build/vega-lite.min.js"),
    ("vega-embed", "package/build/vega-embed.min.js"),
)

PAGE = """<!DOCTYPE html>
<html>
<head>
    {{refresh_tag}}
    <meta charset="utf-8">
    <title>DVC Plot</title>
{scripts}
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def member_text(archive: Path, name: str) -> str:
    with tarfile.open(archive, "r:gz") as tar:
        member = tar.extractfile(name)
        if member is None:
            raise SystemExit(f"{archive}: no {name}")
        return member.read().decode("utf-8")


def inline_script(package: str, archive: Path, build: str) -> str:
    version = archive.name.removeprefix(f"{package}-").removesuffix(".tgz")
    code = member_text(archive, build)
    licence = member_text(archive, "package/LICENSE").replace("*/", "* /")
    if "</script" in code:  # would end the inline element early
        raise SystemExit(f"{archive}: {build} contains '</script'")
    return f"    <!-- {package} {version}\n{licence}    -->\n    <script>{code}</script>"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("vega", type=Path)
    parser.add_argument("vega_lite", type=Path)
    parser.add_argument("vega_embed", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    archives = (args.vega, args.vega_lite, args.vega_embed)
    scripts = "\n".join(inline_script(package, archive, build)
                        for (package, build), archive in zip(LIBRARIES, archives))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(PAGE.format(scripts=scripts), encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
