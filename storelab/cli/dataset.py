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
    The parts holding them are rewritten without them and swapped in at once.

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
def compact_command(dataset: str) -> None:
    """Merge every part of a dataset into one (fewer, larger files for queries).

    Every commit already merges parts by tiers, so a dataset never holds more than a few
    dozen per table; compact merges the rest. The merged part replaces the old ones at once:
    a crash leaves the dataset as it was, and the old files are removed afterwards.

    \b
    Example: storelab compact cache-study/
    """
    from storelab.tables import Dataset

    ds = Dataset.open(dataset)
    before = ds.live_parts()
    ds.compact()
    after = ds.live_parts()
    out().print(
        f"{escape(ds.location)}: {len(before)} part(s) → {len(after)}, {sum(p.snapshot_count for p in after):,} snapshot(s)",
        highlight=False,
    )


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
