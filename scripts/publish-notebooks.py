"""Execute every notebook on the debian-cache slice and publish it as HTML beside the guide.

    .venv/bin/python scripts/publish-notebooks.py [--corpus build/datasets/debian-cache] [NAME ...]

The slice is fetched first when the folder lacks it (``storelab datasets fetch debian-cache``,
≈ 10 minutes, once). Each notebook's parameters cell (tagged ``parameters``, as papermill
marks it) is followed by an injected cell setting ``CORPUS`` to the slice (and any parameter a
notebook needs beside it, below); the notebook runs top to bottom from ``notebooks/`` and is
written to ``docs/notebooks/<name>.html`` with a first cell saying what ran, where, at which
commit and how long it took. The committed notebooks stay without outputs; the tests run them
on the shipped sample.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
OUT = REPO / "docs" / "notebooks"

EXTRA_PARAMETERS: dict[str, dict[str, object]] = {}
"""Parameters beside ``CORPUS``, per notebook (none needed: every default suits the slice)."""


def inject_parameters(notebook: nbformat.NotebookNode, values: dict[str, object]) -> nbformat.NotebookNode:
    """``notebook`` with a cell setting ``values`` right after its ``parameters`` cell (papermill's
    convention: the defaults stay visible, the injected cell overrides them).

    >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("CORPUS = 'a'", metadata={"tags": ["parameters"]})])
    >>> [c.source for c in inject_parameters(nb, {"CORPUS": "b"}).cells]
    ["CORPUS = 'a'", "# Injected parameters\\nCORPUS = 'b'"]
    """
    where = next((i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])), None)
    if where is None:
        raise SystemExit("a notebook without a cell tagged 'parameters' cannot take its corpus as a parameter")
    source = "# Injected parameters\n" + "\n".join(f"{name} = {value!r}" for name, value in values.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    notebook.cells.insert(where + 1, cell)
    return notebook


STYLESHEET = "notebook.css"
_STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.S)


def share_styles(html: str) -> tuple[str, str]:
    """The page with its inline stylesheets replaced by a link to one shared file, and that
    file's text: every exported notebook carries the same ≈ 1,600 lines of CSS.

    >>> share_styles("<html><head><style>p {}</style></head><body>x</body></html>")
    ('<html><head><link rel="stylesheet" href="notebook.css"></head><body>x</body></html>', 'p {}')
    """
    css = "\n".join(block.strip() for block in _STYLE.findall(html))
    first = _STYLE.search(html)
    if first is None:
        return html, ""
    linked = html[: first.start()] + f'<link rel="stylesheet" href="{STYLESHEET}">' + _STYLE.sub("", html[first.start() :])
    return linked, css


def write_page(target: Path, html: str) -> None:
    """Write one published notebook and the shared stylesheet, each whole or not at all."""
    page, css = share_styles(html)
    for path, text in ((target.with_name(STYLESHEET), css), (target, page)):
        if text and not (path.exists() and path.read_text() == text):
            partial = path.with_suffix(".partial")
            partial.write_text(text)
            partial.replace(path)


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    # what the run depends on: the code and the notebooks (docs being edited meanwhile do not count)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "--", "storelab", "notebooks", "scripts", "pyproject.toml"],
        cwd=REPO, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    return done.stdout.strip() + (" with uncommitted changes" if dirty else "")


def publish(path: Path, corpus: Path, work: Path) -> float:
    """Run ``path`` on ``corpus``; write its HTML under docs/notebooks; return the minutes it took."""
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    notebook = nbformat.read(path, as_version=4)
    relative = os.path.relpath(corpus, NOTEBOOKS)
    inject_parameters(notebook, {"CORPUS": relative, **EXTRA_PARAMETERS.get(path.stem, {})})
    started = time.perf_counter()
    env = {"STORELAB_NOTEBOOK_WORK": str(work), "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(notebook, timeout=7200, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    minutes = (time.perf_counter() - started) / 60
    stamp = nbformat.v4.new_markdown_cell(
        f"*Published: executed top to bottom on the `debian-cache` slice (`CORPUS = {relative!r}`) by "
        f"`.venv/bin/python scripts/publish-notebooks.py {path.stem}` at commit {commit()}, "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}, in {minutes:.1f} minutes on {os.cpu_count()} cores. "
        f"The notebook in `notebooks/` runs the same code on the shipped sample.*"
    )
    notebook.cells.insert(0, stamp)
    html, _ = HTMLExporter(template_name="classic").from_notebook_node(notebook)
    OUT.mkdir(parents=True, exist_ok=True)
    write_page(OUT / f"{path.stem}.html", html)
    return minutes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="notebooks to publish (default: all), e.g. 05-cache-slice")
    parser.add_argument("--corpus", type=Path, default=REPO / "build" / "datasets" / "debian-cache")
    parser.add_argument("--work", type=Path, default=REPO / "build" / "notebooks-published", help="where the notebooks write their datasets")
    args = parser.parse_args()
    if not (args.corpus / "narinfos.txt").exists():
        print(f"fetching the debian-cache slice into {args.corpus} (once, ≈ 10 minutes) …", file=sys.stderr)
        fetch = [sys.executable, "-m", "storelab", "datasets", "fetch", "debian-cache", "--to", str(args.corpus)]
        subprocess.run(fetch, check=True, cwd=REPO)
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    if args.names:
        paths = [p for p in paths if p.stem in args.names or p.name in args.names]
        missing = set(args.names) - {p.stem for p in paths} - {p.name for p in paths}
        if missing:
            raise SystemExit(f"no such notebook: {', '.join(sorted(missing))}")
    args.work.mkdir(parents=True, exist_ok=True)
    for path in paths:
        print(f"{path.stem} …", file=sys.stderr, flush=True)
        minutes = publish(path, args.corpus.resolve(), args.work.resolve())
        print(f"{path.stem}: {minutes:.1f} min → docs/notebooks/{path.stem}.html", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
