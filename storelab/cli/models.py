"""``storelab compare``: what each store model would store for a dataset's snapshots."""

from __future__ import annotations

import click

from storelab.cli.base import JSON, SectionedCommand, option
from storelab.cli.options import as_of_option, csv_values, dataset_as_of, price_options


@click.command("compare", cls=SectionedCommand)
@click.argument("dataset", metavar="DATASET", help="Dataset folder or s3://bucket/prefix, ingested with --models.")
@option("--models", default="all", metavar="NAME,…",
        help="Store models: nix-cache-xz, nix-cache-zstd, snix, attic, nix-casync, ncps, restic, borg (all: every one).")
@option("--snapshot", "-s", multiple=True, help="Only these snapshots (id or label; repeatable).")
@option("--chunk-metadata", type=click.IntRange(min=0), default=64, show_default=True,
        help="Bytes of metadata per chunk reference for the metadata-adjusted savings (cdc-bench's m).")
@price_options
@option("--json", JSON, is_flag=True, help="Print the comparison as JSON.")
@option("--parquet", "parquet_path", default=None, metavar="FILE", help="Also write the comparison as a Parquet table.")
@option("--plot", "plot_path", default=None, metavar="FILE", help="Also draw stored bytes against objects (PNG or SVG), the Pareto front marked.")
@as_of_option
def compare_command(
    dataset: str, models: str, snapshot: tuple[str, ...], chunk_metadata: int, put_price: float, get_price: float,
    storage_price: float, months: float, as_json: bool, parquet_path: str | None, plot_path: str | None, as_of: str | None,
) -> None:  # fmt: skip
    """What snix, attic, nix-casync, ncps, restic, borg and a plain binary cache would each store for the same snapshots.

    Each model is a recipe (granularity × chunker × compression × metadata objects, see the
    "Store models" docs page) priced from the dataset's tables: stored bytes, objects (= PUT
    requests), GETs to restore every snapshot once, what the first snapshot stores and what
    each later one adds, dedup and compression factors, savings plain and metadata-adjusted,
    cost. A model the dataset lacks the chunkings for is listed with what to ingest.

    \b
    Example: storelab ingest-nar --from-list nars.txt -o cache/ --models all
             storelab compare cache/ --plot models.png
    """
    from storelab.analysis import Prices
    from storelab.cli.output import fmt_pct, fmt_ratio, fmt_size, out, print_json, table
    from storelab.models import MODELS, compare_models
    from storelab.outputs import atomic_output

    names = list(MODELS) if models.strip() == "all" else csv_values(models, str.strip, "--models")
    prices = Prices(put_price, get_price, storage_price, months)
    frame = compare_models(dataset_as_of(dataset, as_of), names, prices, chunk_metadata, list(snapshot) or None)
    if parquet_path:
        with atomic_output(parquet_path) as target:
            frame.to_parquet(target, index=False)
    if plot_path:
        from storelab.analysis.plots import plot_store_models

        figure = plot_store_models(frame).get_figure(root=True)
        assert figure is not None
        with atomic_output(plot_path) as target:
            figure.savefig(target, format=plot_path.rsplit(".", 1)[-1].lower() if "." in plot_path else "png", dpi=120)
    if as_json:
        print_json(frame.astype(object).where(frame.notna(), None).to_dict("records"))
        return
    shown = table(title=f"store models over {int(frame['snapshots'].iloc[0]):,} snapshot(s) of {dataset}", title_justify="left")
    columns = ("model", "stored", "objects", "restore GETs", "first", "later adds (median)", "dedup", "compression",
               "savings", f"adjusted (m={chunk_metadata})", "cost $", "front")  # fmt: skip
    for number, column in enumerate(columns):
        shown.add_column(column, justify="left" if number == 0 else "right")
    lacking = []
    for row in frame.itertuples():
        if isinstance(row.missing, str):
            lacking.append(f"{row.model}: needs {row.missing}")
            continue
        shown.add_row(
            row.model, fmt_size(row.stored_bytes), f"{int(row.objects):,}", f"{int(row.restore_gets):,}", fmt_size(row.first_bytes),
            fmt_size(row.later_added_median), fmt_ratio(row.dedup_ratio), fmt_ratio(row.compression_ratio), fmt_pct(row.savings),
            fmt_pct(row.adjusted_savings), f"{row.total_cost:.4f}", "●" if row.pareto else "",
        )  # fmt: skip
    if len(lacking) < len(frame):
        out().print(shown)
    for line in lacking:
        out().print(f"not priced — {line}", highlight=False)
