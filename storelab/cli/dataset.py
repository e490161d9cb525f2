"""``storelab snapshots``, ``compact`` and ``render-nar``: what a dataset holds, and getting it back out."""

from __future__ import annotations

import sys

import click

from storelab.cli.base import JSON, SectionedCommand, option
from storelab.cli.output import emit, escape, fmt_size, out


@click.command("snapshots", cls=SectionedCommand)
@click.argument("dataset", metavar="DATASET", help="Dataset folder or s3://bucket/prefix.")
@option("--remove", multiple=True, metavar="ID|LABEL",
         help="Remove these snapshots (repeatable), all at once: a crash leaves every one of them or none.")
@option("--last", type=click.IntRange(min=0), default=50, show_default=True, help="List the last N snapshots (0 = every one).")
@option("--json", JSON, is_flag=True, help="Print the list as JSON (every snapshot).")
def snapshots_command(dataset: str, remove: tuple[str, ...], last: int, as_json: bool) -> None:
    """List the snapshots of a dataset, or remove some.

    One line per snapshot, oldest first: its id, label, source, the chunkings it was recorded
    under, its files and bytes, its NAR size (and compressed NAR sizes where measured).

    --remove takes ids or labels; a label that names several snapshots must be given by id.
    Their rows go from every table in one transaction: all of them, or (after a crash) none.
    A damaged dataset is refused (see `storelab check`).

    \b
    Example: storelab snapshots study/ --remove numpy-1.26.3
    """
    from storelab.tables import Dataset

    ds = Dataset.open(dataset)
    if remove:
        ids = ds.resolve(list(remove))
        ds.remove_snapshots(ids)
        if not as_json:
            out().print(f"removed {len(ids)} snapshot(s) from {escape(ds.location)}: {', '.join(ids)}", highlight=False)
            return
    from storelab.analysis import list_snapshots

    if not ds.snapshot_ids():
        if as_json:
            print("[]")
        else:
            out().print(f"{escape(ds.location)}: no snapshots", highlight=False)
        return
    frame = list_snapshots(ds)
    shown = frame if as_json or not last else frame.tail(last)
    more = "" if len(shown) == len(frame) else f" (the last {last}; --last 0 for all)"
    emit(
        shown, as_json, f"{len(frame):,} snapshot(s) in {ds.location}{more}",
        ("label", "id", "source", "chunkings", "files", "file bytes", "NAR", ".nar.zst", ".nar.xz", "created"),
        lambda row: (
            row.label or "", row.snapshot_id, f"{row.source_kind} {row.source}", row.chunkings.replace("; ", "\n"),
            f"{row.files:,}", fmt_size(row.file_bytes), fmt_size(row.nar_size), fmt_size(row.nar_zstd_size), fmt_size(row.nar_xz_size),
            str(row.created_at)[:19],
        ),
    )  # fmt: skip


@click.command("compact", cls=SectionedCommand)
@click.argument("dataset", metavar="DATASET", help="Dataset folder or s3://bucket/prefix.")
@option("--retain", default=None, metavar="DURATION",
        help="Keep files of replaced versions this long for readers still on them (90s, 10m, 2h, 7d) "
             "[default: 1h, or $STORELAB_RETENTION].")  # fmt: skip
def compact_command(dataset: str, retain: str | None) -> None:
    """Merge a dataset's small files into larger ones, and delete what nothing reads.

    Every few dozen commits an ingest does this by itself; compact does it now. The merge is
    one transaction: readers see the old files or the new ones, never both. Files of versions
    replaced longer than --retain ago are deleted from disk, and so are files left by writers
    that died before their commit. A damaged dataset is refused (see `storelab check`): damage
    is never merged into new files.

    \b
    Example: storelab compact cache-study/ --retain 10m
    """
    from storelab.tables import Dataset
    from storelab.tables.dataset import parse_duration

    ds = Dataset.open(dataset)
    done = ds.compact(retain=parse_duration(retain) if retain is not None else None)
    out().print(
        f"{escape(ds.location)}: {done.files_before} file(s) → {done.files_after}, {len(ds.snapshot_ids()):,} snapshot(s), "
        f"{done.deleted} old file(s) deleted; version {done.version}",
        highlight=False,
    )


@click.command("check", cls=SectionedCommand)
@click.argument("dataset", metavar="DATASET", help="Dataset folder or s3://bucket/prefix.")
@option("--as-of", "as_of", default=None, metavar="VERSION|TIME", help="Check the dataset as it was at this version or time.")
def check_command(dataset: str, as_of: str | None) -> None:
    """Report what a reader of a dataset would refuse, one line each; exit 1 if anything.

    Checked: every table file the catalog names exists and is readable Parquet with its
    table's columns; no snapshot is held twice; no table holds rows of a snapshot that the
    snapshots table lacks; every snapshot has its nodes; the index's values pass their checks
    and agree with the tables (on a sample). compact and snapshots --remove refuse a dataset
    that fails this.

    \b
    Example: storelab check cache-study/
    """
    from storelab.tables import Dataset

    ds = Dataset.open(dataset, as_of=as_of)
    problems = ds.problems()
    for line in problems:
        print(f"storelab: {line}", file=sys.stderr)
    if problems:
        raise click.exceptions.Exit(1)
    out().print(f"{escape(ds.location)}: sound — {len(ds.snapshot_ids()):,} snapshot(s) at version {ds.version()}", highlight=False)


@click.command("migrate", cls=SectionedCommand)
@click.argument("dataset", metavar="DATASET", help="A schema-3 dataset folder or s3://bucket/prefix.")
def migrate_command(dataset: str) -> None:
    """Convert a dataset of storelab's own Parquet parts (schema 3) into a DuckLake (schema 4).

    Every row a schema-3 reader saw (the live parts) goes into the new lake in one
    transaction; only then does the dataset's marker switch, and the old files are deleted. A
    crash before the switch leaves the old dataset as it was: run migrate again. In object
    storage the new catalog goes to $STORELAB_CATALOG (PostgreSQL). Older schemas are refused.

    \b
    Example: storelab migrate old-study/
    """
    from storelab.tables.migrate import migrate

    moved = migrate(dataset)
    out().print(f"{escape(dataset)}: {moved:,} snapshot(s) now in a DuckLake (schema 4)", highlight=False)


@click.command("render-nar", cls=SectionedCommand)
@click.argument("dataset", metavar="DATASET", help="Dataset folder or s3://bucket/prefix.")
@click.argument("snapshot", metavar="SNAPSHOT", help="Snapshot id or label.")
@option("--store", required=True, help="The store the snapshot was ingested with --store into.")
@option("--output", "-o", required=True, help="NAR file to write; - for standard output.")
def render_nar_command(dataset: str, snapshot: str, store: str, output: str) -> None:
    """Write a snapshot back as a NAR, from its castore description and a blob store.

    The NAR is byte-identical with the one ingested (or with `nix-store --dump` of the tree
    ingested). Every chunk read is checked against its BLAKE3 digest.

    \b
    Example: storelab render-nar study/ hello-2.12 --store file:///srv/castore -o hello.nar
    """
    from storelab.nar.render import castore_from_snapshot, render_nar
    from storelab.stores import open_store

    root, directories = castore_from_snapshot(dataset, snapshot)
    blob_store = open_store(store, create=False)
    pieces = render_nar(root, directories, blob_store)
    if output == "-":
        for piece in pieces:
            sys.stdout.buffer.write(piece)
        sys.stdout.buffer.flush()
        return
    from storelab.outputs import atomic_write

    atomic_write(output, pieces)
