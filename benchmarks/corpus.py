"""Build a benchmark corpus of real files from this machine (reproducible: sorted walk)."""

from __future__ import annotations

import argparse
import os
import shutil
import stat
from pathlib import Path

DEFAULT_SOURCES = ("/usr/lib", "/usr/share", "/usr/bin", "/usr/libexec")


def build_corpus(dest: Path, target_bytes: int, sources: tuple[str, ...] = DEFAULT_SOURCES) -> tuple[int, int]:
    """Copy regular files (sorted walk of ``sources``) into ``dest`` until ``target_bytes``.

    Returns (files, bytes). An existing complete corpus of the same target is reused.
    """
    marker = dest / ".corpus-complete"
    if marker.exists() and marker.read_text().split()[0] == str(target_bytes):
        _, files, total = marker.read_text().split()
        return int(files), int(total)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    files = total = 0
    for source in sources:
        for root, dirs, names in os.walk(source):
            dirs.sort()
            for name in sorted(names):
                path = os.path.join(root, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode) or not os.access(path, os.R_OK):
                    continue
                target = dest / os.path.relpath(path, "/")
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    shutil.copy2(path, target)
                except OSError:
                    continue
                files += 1
                total += st.st_size
                if total >= target_bytes:
                    marker.write_text(f"{target_bytes} {files} {total}\n")
                    return files, total
    marker.write_text(f"{target_bytes} {files} {total}\n")
    return files, total


def warm(dest: Path) -> None:
    """Read every file once so the timed run finds the page cache warm."""
    buf = bytearray(1 << 20)
    for root, _, names in os.walk(dest):
        for name in names:
            try:
                with open(os.path.join(root, name), "rb", buffering=0) as f:
                    while f.readinto(buf):
                        pass
            except OSError:
                pass


def add_corpus_arguments(parser: argparse.ArgumentParser, repo: Path) -> None:
    """The options every corpus benchmark takes: which corpus, how large, how many rounds."""
    parser.add_argument("--corpus-bytes", type=int, default=1_300_000_000)
    parser.add_argument("--corpus", type=Path, default=repo / "build" / "bench-corpus")
    parser.add_argument("--runs", type=int, default=5)


def baseline_checkout(repo: Path, rev: str) -> Path:
    """A checkout of storelab at ``rev`` (a git worktree under build/, made once), byte-compiled,
    for timing the code before a change beside the code after it in the same run: run it with
    ``PYTHONPATH=<checkout>`` (see :func:`baseline_env`), which wins over the editable install."""
    import subprocess

    commit = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()
    where = repo / "build" / f"baseline-{commit[:12]}"
    if not (where / "storelab" / "__init__.py").exists():
        subprocess.run(["git", "worktree", "add", "--detach", "--force", str(where), commit], cwd=repo, check=True, capture_output=True)
    subprocess.run([os.sys.executable, "-m", "compileall", "-q", str(where / "storelab")], check=True, stdout=subprocess.DEVNULL)
    return where


def baseline_env(checkout: Path) -> dict[str, str]:
    """The environment that makes ``python -m storelab`` run the code of ``checkout``."""
    return {**os.environ, "PYTHONPATH": str(checkout)}
