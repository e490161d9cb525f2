"""``storelab stats`` and ``report``: the figures of a dataset."""

from __future__ import annotations

import math
import sys
from typing import Any

import click

from storelab.cli.base import JSON, SectionedCommand, option
from storelab.cli.options import as_of_option, dataset_as_of, price_options
from storelab.cli.output import (
    bar,
    escape,
    factors,
    fmt_pct,
    fmt_ratio,
    fmt_size,
    jsonable,
    out,
    print_json,
    table,
)
from storelab.units import format_bytes


@click.command("stats", cls=SectionedCommand)
@click.argument("dataset", metavar="DATASET", help="Dataset folder or s3://bucket/prefix.")
@option("--snapshot", "-s", multiple=True,
         help="Only these snapshots (id or label; repeatable). Figures are over them; 'new' stays relative to every earlier "
         "snapshot of the dataset.")
@option("--last", type=click.IntRange(min=0), default=20, show_default=True,
         help="Per-snapshot rows: the last N snapshots (0 = every one); --snapshot shows those asked for.")
@option("--json", JSON, is_flag=True, help="Print the same figures as JSON (every snapshot).")
@option("--cost", is_flag=True, panel="Cost model", help="Also price the store: requests and storage per chunker.")
@as_of_option
@price_options
def stats_command(
    dataset: str, snapshot: tuple[str, ...], last: int, as_json: bool, cost: bool, as_of: str | None, put_price: float,
    get_price: float, storage_price: float, months: float,
) -> None:  # fmt: skip
    """Dedup figures at every level (NAR, blob, chunk per chunking, directory): overall and per snapshot.

    stored = what a store of that level holds: the distinct objects, compressed where
    measured, plus the index objects snix writes (and its object count). logical = every
    occurrence; unique = each distinct object once. The saving is two factors: dedup =
    logical / unique, compression = unique / compressed; their product is the reduction.
    savings = 1 − stored / logical. hit rate = the share of what each snapshot needed that a
    store holding the earlier snapshots had already, by bytes and by objects.

    Each tree counts once at the nar, blob and directory levels whatever its chunkings; the
    chunk level has one row per chunking (chunker and zstd level), over the snapshots
    recorded under it. Figures that would not compare are flagged below the tables.

    Per snapshot, "new" is what it adds to a store that holds every snapshot before it in
    the dataset; with --snapshot X, X's rows are shown within the whole dataset's order.

    --cost prices a snix-layout object store holding the dataset: one PUT per distinct
    object, a HEAD before each write, GETs to restore every snapshot once, and the stored
    bytes for --months; with the requests each --store ingest really made beside it.
    """
    snapshots = list(snapshot) or None  # click gives a tuple
    from storelab.analysis import dedup_summary, snapshot_summary

    source = dataset_as_of(dataset, as_of)
    if cost:
        _print_cost(source, dataset, snapshots, as_json, put_price, get_price, storage_price, months)
        return
    overall = dedup_summary(source, snapshots)
    per = snapshot_summary(source, snapshots)
    warnings = overall.attrs.get("warnings", [])
    if as_json:
        print_json(
            {
                "dataset": str(dataset),
                "overall": jsonable(overall.reset_index(names="row").to_dict("records")),
                "snapshots": jsonable(per.to_dict("records")),
                "warnings": warnings,
            }
        )
        return
    count = per["snapshot_id"].nunique()
    chunk_rows = overall[overall["level"] == "chunk"]
    levels = overall if len(chunk_rows) <= 1 else overall[overall["level"] != "chunk"]
    shown = table(title=f"dedup over {count:,} snapshot(s) of {dataset}", title_justify="left")
    for col in ("level", "stored", "objects", "logical", "unique", "compressed", "dedup × compression = reduction", "savings", "hit rate bytes / objects"):
        shown.add_column(col, justify="left" if col == "level" else "right")
    for name, row in levels.iterrows():
        shown.add_row(
            str(name), fmt_size(row.stored_bytes), f"{row.stored_objects:,}", fmt_size(row.logical_bytes), fmt_size(row.unique_bytes),
            fmt_size(row.compressed_bytes), factors(row), fmt_pct(row.space_savings), f"{fmt_pct(row.hit_rate_bytes)} / {fmt_pct(row.hit_rate_objects)}",
        )  # fmt: skip
    if len(chunk_rows) > 1:
        shown.add_row("chunk", "", "", "", "", "", f"{len(chunk_rows)} chunkings: see below", "", "")
    out().print(shown)
    if len(chunk_rows) > 1:
        _print_chunkings(chunk_rows)
    for warning in warnings:
        out().print(f"[yellow]note:[/] {escape(warning)}")
    shown = per if snapshots or not last else per[per["seq"] >= sorted(per["seq"].unique())[-last:][0]]
    more = "" if len(shown) == len(per) else f"; the last {last} of {count:,} (--last 0 for all)"
    snaps = table(title=f"per snapshot, in creation order; new = not in any earlier snapshot{more}", title_justify="left")
    for col in ("snapshot", "level", "logical", "unique", "new", "new stored", "hit rate bytes / objects", "dedup"):
        snaps.add_column(col, justify="left" if col in ("snapshot", "level") else "right")
    previous = None
    for row in shown.itertuples():
        level = row.level if row.level != "chunk" or len(chunk_rows) <= 1 else f"chunk {row.chunker_id}"
        snaps.add_row(
            row.label if row.snapshot_id != previous else "", level, fmt_size(row.logical_bytes), fmt_size(row.unique_bytes),
            fmt_size(row.new_bytes), fmt_size(row.new_stored_bytes), f"{fmt_pct(row.hit_rate_bytes)} / {fmt_pct(row.hit_rate_objects)}",
            fmt_ratio(row.dedup_ratio), end_section=row.level == "directory",
        )  # fmt: skip
        previous = row.snapshot_id
    out().print(snaps)


def _print_chunkings(rows: Any) -> None:
    """One line per chunking, with bars of its stored bytes and its object count (each
    against the largest), so the trade-off reads at a glance at any number of chunkings."""
    most_bytes = max(float(v) for v in rows["stored_bytes"]) or 1.0
    most_objects = max(float(v) for v in rows["stored_objects"]) or 1.0
    shown = table(title="chunkings (the chunk level; stored = compressed chunks + blob index objects)", title_justify="left")
    for col in ("chunker", "zstd", "snapshots", "stored", "objects", "mean chunk", "dedup × compression = reduction", "savings"):
        shown.add_column(col, justify="left" if col == "chunker" else "right", overflow="fold", no_wrap=col != "chunker")
    shown.add_column("stored bytes", justify="left", no_wrap=True)
    shown.add_column("objects", justify="left", no_wrap=True)
    for row in rows.sort_values(["stored_bytes", "stored_objects"]).itertuples():
        mean = row.unique_bytes / row.unique_objects if row.unique_objects else None
        shown.add_row(
            str(row.chunker_id), str(row.zstd_level), f"{row.snapshots:,}", fmt_size(row.stored_bytes), f"{row.stored_objects:,}",
            fmt_size(mean), factors(row), fmt_pct(row.space_savings), bar(row.stored_bytes / most_bytes),
            bar(row.stored_objects / most_objects),
        )  # fmt: skip
    out().print(shown)


def _print_cost(
    source: Any, dataset: str, snapshot: list[str] | None, as_json: bool, put: float, get: float, storage: float, months: float
) -> None:
    from storelab.analysis import Prices, cost_model, measured_requests

    prices = Prices(put, get, storage, months)
    model = cost_model(source, prices, snapshot)
    measured = measured_requests(source, snapshot)
    if as_json:
        print_json(
            {
                "dataset": str(dataset),
                "prices": {"put_per_1000": put, "get_per_1000": get, "storage_per_gib_month": storage, "months": months},
                "break_even_object_size": None if math.isinf(prices.break_even_object_size) else prices.break_even_object_size,
                "model": jsonable(model.to_dict("records")),
                "measured": jsonable(measured.to_dict("records")),
            }
        )
        return
    shown = table(
        title=f"cost of a snix-layout store holding {dataset} (${put:g}/1k PUT, ${get:g}/1k GET, ${storage:g}/GiB-month, {months:g} month(s))",
        title_justify="left",
    )
    for col in ("chunker", "objects", "mean object", "stored", "PUT $", "HEAD $", "storage $", "total $", "restore GET $"):
        shown.add_column(col, justify="left" if col == "chunker" else "right")
    for row in model.itertuples():
        shown.add_row(
            row.chunker_id, f"{row.put_requests:,}", fmt_size(row.mean_stored_object), fmt_size(row.stored_bytes),
            f"{row.put_cost:.4f}", f"{row.head_cost:.4f}", f"{row.storage_cost:.4f}", f"{row.total_cost:.4f}",
            f"{row.restore_cost:.4f}",
        )  # fmt: skip
    out().print(shown)
    if not math.isinf(prices.break_even_object_size):
        out().print(
            f"an object under {format_bytes(int(prices.break_even_object_size))} costs more to PUT once than to keep "
            f"for {months:g} month(s) at these prices",
            highlight=False,
        )
    if len(measured):
        seen = table(title="requests the --store ingests made", title_justify="left")
        for col in ("snapshot", "store", "PUT", "PUT bytes", "HEAD", "GET", "retries"):
            seen.add_column(col, justify="left" if col in ("snapshot", "store") else "right")
        for row in measured.itertuples():
            seen.add_row(
                row.label, row.store, f"{row.store_put_count:,}", fmt_size(row.store_put_bytes), f"{row.store_head_count:,}",
                f"{row.store_get_count:,}", f"{row.store_retry_count:,}",
            )  # fmt: skip
        out().print(seen)


@click.command("report", cls=SectionedCommand)
@click.argument("dataset", metavar="DATASET", help="Dataset folder or s3://bucket/prefix.")
@option("--output", "-o", default="report.html", help="Report file (report.html, or report.md with --format md).")
@option("--format", "fmt", default="html", help="html (one self-contained file) or md (Markdown, PNGs beside it).")
@option("--snapshot", "-s", multiple=True, help="Only these snapshots (id or label); repeatable.")
@as_of_option
def report_command(dataset: str, output: str, fmt: str, snapshot: tuple[str, ...], as_of: str | None) -> None:
    """Write every analysis of a dataset, figures embedded, into one report.

    The HTML file needs no network: figures are embedded PNGs, styles inline, no scripts.
    It names the storelab version, the command that made it and the dataset's snapshots.

    \b
    Example: storelab report study/ -o study.html
    """
    snapshots = list(snapshot) or None  # click gives a tuple
    from storelab.report import build_report

    command = ["storelab", *sys.argv[1:]] if sys.argv and "report" in sys.argv else None
    path = build_report(dataset_as_of(dataset, as_of), output, fmt, command, snapshots)
    out().print(f"report → {path}", highlight=False)
