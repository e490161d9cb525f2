"""The benchmarks' corpora. The default is pinned — the same bytes on every machine: the
unpacked trees of the ``debian-cache`` slice (1,310 store paths of pinned Debian packages,
``storelab datasets fetch debian-cache``, fetched once into ``build/datasets/debian-cache``).
``--usr`` instead copies this machine's ``/usr`` in sorted order (the corpus of earlier figures;
it differs from machine to machine, so its figures cannot be reproduced elsewhere)."""

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
    parser.add_argument("--usr", action="store_true", help="this machine's /usr (sorted walk, --corpus-bytes of it), not the slice's trees")
    parser.add_argument("--corpus-bytes", type=int, default=1_300_000_000, help="with --usr: how much of /usr to copy")
    parser.add_argument("--corpus", type=Path, default=None, help="a folder to use as it is (default: the slice's trees, or build/bench-corpus with --usr)")
    parser.add_argument("--runs", type=int, default=5)


def slice_folder(repo: Path) -> Path:
    """The ``debian-cache`` slice's folder under build/, fetched (once, ≈ 10 minutes) when missing."""
    import subprocess
    import sys

    folder = repo / "build" / "datasets" / "debian-cache"
    if not (folder / "narinfos.txt").exists():
        print("fetching the debian-cache slice (once, ≈ 10 minutes) …", file=sys.stderr)
        command = [sys.executable, "-m", "storelab", "datasets", "fetch", "debian-cache", "--to", str(folder)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=repo)
    return folder


def count_files(root: Path) -> tuple[int, int]:
    """(regular files, their bytes) under ``root``: those :func:`regular_files` names."""
    paths = regular_files(root)
    return len(paths), sum(os.lstat(path).st_size for path in paths)


def regular_files(root: Path) -> list[str]:
    """Every regular file under ``root`` (sorted; symbolic links left out: a package's absolute
    links point into this machine, and a peer given them would read the machine's files)."""
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            if stat.S_ISREG(os.lstat(path).st_mode):
                found.append(path)
    return sorted(found)


def resolve_corpus(args: argparse.Namespace, repo: Path) -> tuple[Path, int, int, str]:
    """The corpus the options name: (folder, files, bytes, a description for the table's
    heading). The default is the pinned slice's unpacked trees."""
    if args.usr:
        where = args.corpus or repo / "build" / "bench-corpus"
        files, total = build_corpus(where, args.corpus_bytes)
        return where, files, total, f"this machine's /usr, sorted walk ({where})"
    if args.corpus is not None:
        files, total = count_files(args.corpus)
        return args.corpus, files, total, str(args.corpus)
    where = slice_folder(repo) / "trees"
    files, total = count_files(where)
    return where, files, total, "the debian-cache slice's trees (pinned: datasets/debian-cache/pins.json)"


def baseline_checkout(repo: Path, rev: str) -> Path:
    """A checkout of storelab at ``rev`` (a git worktree under build/, made once), its C
    extensions built (from a wheel pip builds of it: the checkout's own build rules) and its
    modules byte-compiled, for timing the code before a change beside the code after it in the
    same run: run it with :func:`baseline_env`."""
    import subprocess
    import tempfile
    import zipfile

    commit = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()
    where = repo / "build" / f"baseline-{commit[:12]}"
    if not (where / "storelab" / "__init__.py").exists():
        subprocess.run(["git", "worktree", "add", "--detach", "--force", str(where), commit], cwd=repo, check=True, capture_output=True)
    if not (where / ".extensions-built").exists():
        with tempfile.TemporaryDirectory() as wheels:
            subprocess.run([os.sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, str(where)], check=True, capture_output=True)
            for wheel in Path(wheels).glob("storelab-*.whl"):
                with zipfile.ZipFile(wheel) as archive:
                    for member in archive.namelist():
                        if member.startswith("storelab/") and member.endswith(".so"):
                            archive.extract(member, where)
        (where / ".extensions-built").touch()
    subprocess.run([os.sys.executable, "-m", "compileall", "-q", str(where / "storelab")], check=True, stdout=subprocess.DEVNULL)
    return where


def baseline_env(checkout: Path) -> dict[str, str]:
    """The environment that makes ``python -m storelab`` run the code of ``checkout``:
    ``PYTHONPATH`` names it, and ``PYTHONSAFEPATH`` keeps ``-m`` from putting the working
    directory first (run from the repository, that would import the repository's storelab,
    not the checkout's, whatever ``PYTHONPATH`` says)."""
    return {**os.environ, "PYTHONPATH": str(checkout), "PYTHONSAFEPATH": "1"}


def busy_cpu_seconds() -> float | None:
    """CPU time the whole machine has spent busy so far (user, nice, system, irq), from
    /proc/stat; None where there is none. The difference across a run is what the run and
    every process it started cost, workers and kernel included (on an otherwise idle machine)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, *_ = (int(x) for x in fields)
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")

