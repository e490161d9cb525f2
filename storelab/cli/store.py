"""``storelab store verify`` and ``bench-upload``: stores written with ``--store``, and uploads over slow links."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from storelab.cli.base import JSON, SectionedCommand, SectionedGroup, option
from storelab.cli.options import BUFFER_OPTION, THRESHOLD_OPTION, csv_values
from storelab.cli.output import jsonable, out, print_json, table
from storelab.errors import ConfigError, StorelabError
from storelab.units import format_bytes, parse_size


@click.group("store", cls=SectionedGroup)
def store_app() -> None:
    """Look after a store written with --store."""


@store_app.command("verify")
@click.argument("url", metavar="URL", help="Store URL: file:///path, s3://bucket/prefix.")
@option("--max-chunk-size", default="64MiB",
        help="Refuse a chunk that decompresses past this (zstd bombs); a chunk a blob index names may reach exactly "
        "its recorded size, and the bound grows to the largest chunk the indexes name.")  # fmt: skip
@option("--json", JSON, is_flag=True, help="Print the report as JSON.")
def store_verify_command(url: str, max_chunk_size: str, as_json: bool) -> None:
    """Re-read every object of a store and check it; exit 1 if anything is missing or corrupt.

    Every chunk is decompressed (bounded) and its BLAKE3 compared with its name; every blob
    index must name chunks that exist with the recorded sizes and make up the blob; every
    directory closure must start at its root, hold only directories reachable from it, and
    name only blobs the store has. Every decompression is bounded. A URL under which there is
    no object at all is refused as no store (a mistyped prefix says so rather than "ok").

    \b
    Example: storelab store verify s3://castore/snix
    """
    from storelab.ingest.progress import ByteProgress, wants_progress
    from storelab.stores import open_store
    from storelab.stores.verify import verify_store

    store = open_store(url, create=False)
    with ByteProgress("verify", wants_progress(as_json)) as bar:
        report = verify_store(store, parse_size(max_chunk_size), on_object=lambda: bar.advance(1, 0))
    if as_json:
        print_json(
            {
                "store": url,
                "ok": report.ok,
                "chunks": report.chunks,
                "chunk_bytes": report.chunk_bytes,
                "blobs": report.blobs,
                "directory_closures": report.directory_closures,
                "directories": report.directories,
                "problems": [{"key": p.key, "kind": p.kind, "detail": p.detail} for p in report.problems],
            }
        )
    else:
        for problem in report.problems[:50]:
            out().print(str(problem), highlight=False, soft_wrap=True)
        if len(report.problems) > 50:
            out().print(f"… and {len(report.problems) - 50} more problems (--json lists them all)")
        verdict = "[green]ok[/]" if report.ok else f"[red]{len(report.problems)} problem(s)[/]"
        out().print(
            f"{url}: {report.chunks:,} chunks ({format_bytes(report.chunk_bytes)}), {report.blobs:,} blobs, "
            f"{report.directory_closures:,} directory closures ({report.directories:,} directories): {verdict}",
            highlight=False,
        )
    if not report.ok:
        raise click.exceptions.Exit(1)


@click.command("bench-upload", cls=SectionedCommand)
@click.argument("source", metavar="TREE|NAR", help="A directory tree, or a NAR file.")
@option("--rtt", default="0ms,1ms,5ms,20ms", help="Round-trip times to simulate, comma-separated.")
@option("--concurrency", default="1,8,32,128", help="Upload concurrencies to try, comma-separated.")
@option("--bandwidth", default=None, help="Link bandwidth per second (e.g. 100MiB); default unlimited.")
@THRESHOLD_OPTION
@BUFFER_OPTION
@option("--runs", type=click.IntRange(1), default=1, show_default=True,
        help="Time every setting this many times, taking turns; the table keeps the median and the spread.")
@option("--out", "-o", "out_dir", default="build/bench-upload", help="Folder for upload.parquet and upload.png.")
@option("--json", JSON, is_flag=True, help="Print the table as JSON.")
def bench_upload_command(
    source: str, rtt: str, concurrency: str, bandwidth: str | None, upload_threshold: str, upload_buffer: str, runs: int,
    out_dir: str, as_json: bool,
) -> None:  # fmt: skip
    """How much concurrent small-blob upload saves over a slow link.

    Ingests the input into an in-memory store behind a simulated link, sequentially (each
    request waits for the one before) and then with tvix's background uploader at each
    concurrency, for every RTT. Prints wall time, requests and speedup over sequential; writes
    the table as Parquet and a plot. Sequential runs at high RTT take a while: every file
    costs at least four round trips (HEAD and PUT of its chunk and of its index).

    \b
    Example: storelab bench-upload /usr/share/doc --rtt 10ms --concurrency 8,32,128
    """
    from storelab.analysis.upload import upload_grid, write_upload_outputs
    from storelab.stores.latency import parse_duration

    rtts = csv_values(rtt, parse_duration, "--rtt")
    levels = csv_values(concurrency, int, "--concurrency")
    if any(level < 1 for level in levels):
        raise ConfigError("--concurrency: levels must be at least 1 (the sequential run is always made)")
    if not os.path.exists(source):
        raise StorelabError(f"{source}: no such file or directory")
    shown = table(title=f"upload of {source} through a simulated link", title_justify="left")
    for col in ("RTT", "mode", "concurrency", "wall (median)", "min–max", "requests", "PUT", "HEAD", "speedup"):
        shown.add_column(col, justify="left" if col == "mode" else "right")

    def show(row: dict[str, Any]) -> None:
        if not as_json:
            print(
                f"  RTT {row['rtt_ms']:g} ms, {row['mode']} {row['concurrency'] or ''}: {row['wall_seconds']:.2f} s",
                file=sys.stderr,
            )

    grid = upload_grid(
        source, rtts, levels, parse_size(bandwidth) if bandwidth else None, parse_size(upload_threshold), parse_size(upload_buffer), on_run=show,
        runs=runs,
    )
    write_upload_outputs(grid, out_dir)
    if as_json:
        print_json(jsonable(grid.to_dict("records")))
        return
    for row in grid.itertuples():
        shown.add_row(
            f"{row.rtt_ms:g} ms", row.mode, str(row.concurrency or "–"), f"{row.wall_seconds:.2f} s",
            f"{row.wall_min:.2f}–{row.wall_max:.2f} s", f"{row.requests:,}",
            f"{row.put_count:,}", f"{row.head_count:,}", f"{row.speedup:.1f}×",
        )  # fmt: skip
    out().print(shown)
    out().print(f"table: {Path(out_dir) / 'upload.parquet'}  plot: {Path(out_dir) / 'upload.png'}", highlight=False)
