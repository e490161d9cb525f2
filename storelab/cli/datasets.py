"""``storelab datasets list``, ``unpack`` and ``fetch``: corpora to study."""

from __future__ import annotations

import click

from storelab.cli.base import SectionedGroup, option
from storelab.cli.output import out
from storelab.units import format_bytes


@click.group("datasets", cls=SectionedGroup)
def datasets_app() -> None:
    """Real corpora to study: the ones shipped in datasets/ (checked against their manifests) and ones fetched from PyPI and Debian."""


@datasets_app.command("list")
def datasets_list_command() -> None:
    """List the shipped corpora: archives (unpack, then ingest) and closures (for `storelab layers`);
    `storelab datasets fetch` prepares larger ones."""
    from storelab.datasets import FETCHABLE, list_samples

    for manifest in list_samples():
        total = sum(f.size for f in manifest.files)
        out().print(f"[bold]{manifest.name}[/]  {len(manifest.files)} {manifest.kind}, {format_bytes(total)}  ({manifest.folder})", highlight=False)
        out().print(f"  {manifest.description}", highlight=False)
        for item in manifest.files:
            out().print(f"  {item.label:<22} {format_bytes(item.size):>10}  sha256 {item.sha256[:16]}…  ({item.fetched_with})", highlight=False)
    for name, (what, _) in FETCHABLE.items():
        out().print(f"[bold]{name}[/] (storelab datasets fetch {name}): {what}", highlight=False)


@datasets_app.command("unpack")
@click.argument("name", metavar="NAME", help="Corpus name, e.g. pypi-sample.")
@option("--to", default="build/samples", help="Folder to unpack into; one sub-folder per snapshot.")
def datasets_unpack_command(name: str, to: str) -> None:
    """Check every archive's sha256, unpack each to a tree, print the trees' paths (one a line).

    \b
    Example: for t in $(storelab datasets unpack pypi-sample); do storelab ingest-dir $t -o study/; done
    """
    from storelab.datasets import unpack_sample

    for _, tree in unpack_sample(name, to):
        print(tree)


@datasets_app.command("fetch")
@click.argument("name", metavar="NAME", help="pypi-series, debian-packages, debian-closures or debian-cache.")
@click.argument("args", nargs=-1, metavar="[ARGS]…",
           help="pypi-series: PROJECT [VERSION…]; debian-packages: PACKAGE…; debian-closures: PACKAGE…")
@option("--to", default=None, help="Folder to write into; default build/datasets/NAME.")
@option("--small", is_flag=True, help="debian-cache: the small slice (88 store paths, 40 MB), for CI and trying things.")
def datasets_fetch_command(name: str, args: tuple[str, ...], to: str | None, small: bool) -> None:
    """Prepare a real corpus no one here wrote, with a manifest (sizes, sha256, the fetching command).

    pypi-series: consecutive releases of a wheel through `pip download` (default numpy
    1.26.0–1.26.4), unpacked to one tree each. debian-packages: every version Debian's index
    offers of some packages through `apt-get download`, unpacked with `dpkg-deb -x`.
    debian-closures: closures of python3, perl, gcc, git, postgresql, nginx, curl and vim
    from the package index (nothing installed), for `storelab layers`. debian-cache: a Nix
    binary cache slice (.nar.xz, .nar.zst, .narinfo, narinfos.txt) of pinned Debian package
    pairs (datasets/debian-cache/pins.json; every .deb checked against it).
    Prints the trees (or the closures' or the cache's folder), one a line.

    \b
    Example: for t in $(storelab datasets fetch pypi-series rich 13.7.0 13.7.1); do storelab ingest-dir $t -o study/; done
             storelab datasets fetch debian-cache --small --to slice/
             storelab ingest-nar --from-list slice/narinfos.txt -o cache/ --models all
    """
    from storelab.datasets import fetch_corpus
    from storelab.errors import ConfigError
    from storelab.ingest.progress import CountProgress, wants_progress

    if small and name != "debian-cache":
        raise ConfigError("--small is debian-cache's option")
    args = (*args, "--small") if small else args
    target = to or f"build/datasets/{name}{'-small' if small else ''}"
    with CountProgress(f"fetch {name}", wants_progress(False), None, "files") as bar:
        paths = fetch_corpus(name, target, args or (), lambda label, total: bar.advance(1, label, total))
    for path in paths:
        print(path)
