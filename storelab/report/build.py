"""One report from a dataset: every analysis, its figures, and how it was made.

HTML: one self-contained file (figures as embedded PNG, styles inline, no script, no link to
anything) that opens in a browser without a network. Markdown: a ``.md`` file with its PNGs
beside it. Both are written to a temporary name and renamed into place.
"""

from __future__ import annotations

import base64
import html
import io
import os
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from storelab.errors import ConfigError, OutputError
from storelab.tables import Dataset
from storelab.units import format_ratio, format_share, format_size

__all__ = ["Section", "build_report", "report_sections", "SECTION_TITLES"]

SECTION_TITLES = (
    "Snapshots",
    "Dedup at every level",
    "What each snapshot adds",
    "Exclusive and shared bytes",
    "Chunk sizes",
    "Chunkers compared",
    "Reference counts",
    "Where the bytes are",
    "Cost of a store",
)


@dataclass
class Section:
    """A titled part of the report: words, tables and figures, in that order."""

    title: str
    text: str = ""
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: Sequence[tuple[str, object]] = field(default_factory=list)
    """(name, matplotlib Figure)."""


_fmt_bytes = format_size
_fmt_ratio = format_ratio
_fmt_share = format_share


TABLE_SNAPSHOTS = 50
"""Per-snapshot tables show the last this many snapshots (figures show every one)."""


def _last_snapshots(frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows of the last :data:`TABLE_SNAPSHOTS` snapshots, and a sentence saying so."""
    seqs = sorted(frame["seq"].unique())
    if len(seqs) <= TABLE_SNAPSHOTS:
        return frame, ""
    kept = frame[frame["seq"] >= seqs[-TABLE_SNAPSHOTS]]
    return kept, f" The table shows the last {TABLE_SNAPSHOTS} of {len(seqs):,} snapshots (`storelab stats --json` lists all)."


def _show(frame: pd.DataFrame, formats: Mapping[str, Callable[[object], str]]) -> pd.DataFrame:
    shown = frame.copy()
    for column, fmt in formats.items():
        if column in shown.columns:
            shown[column] = shown[column].map(fmt)
    return shown


def report_sections(dataset: str | os.PathLike[str] | Dataset, snapshots: Sequence[str] | None = None) -> list[Section]:
    """Compute every section of the report (figures included) from the dataset."""
    from storelab.analysis import (
        attribution,
        chunk_size_distribution,
        chunk_size_stats,
        chunker_comparison,
        cost_model,
        dedup_summary,
        refcount_histogram,
        sharing,
        snapshot_summary,
    )
    from storelab.analysis.db import connect
    from storelab.analysis.plots import (
        plot_attribution,
        plot_chunk_size_cdf,
        plot_chunk_size_histogram,
        plot_chunker_tradeoff,
        plot_dedup_levels,
        plot_new_bytes,
        plot_refcounts,
        plot_sharing,
    )

    sizes = {c: _fmt_bytes for c in ("logical_bytes", "unique_bytes", "compressed_bytes", "stored_bytes", "metadata_bytes",
                                      "new_bytes", "shared_bytes", "new_stored_bytes", "exclusive_bytes", "file_bytes",
                                      "nar_size", "referenced_bytes", "mean_size", "median_size", "min_size", "avg_size",
                                      "max_size", "chunk_bytes", "index_bytes", "directory_bytes", "mean_chunk", "mean_stored_object",
                                      "nar_zstd_size", "nar_xz_size")}  # fmt: skip
    ratios = {c: _fmt_ratio for c in ("dedup_ratio", "compression_ratio", "reduction_ratio", "mean_over_avg")}
    shares = {c: _fmt_share for c in ("space_savings", "stored_fraction", "exclusive_share", "logical_share", "at_max_share",
                                      "below_min_share", "hit_rate_bytes", "hit_rate_objects")}  # fmt: skip
    fmt = sizes | ratios | shares
    sections: list[Section] = []

    with connect(dataset, snapshots) as con:
        snaps = con.execute(
            "SELECT s.seq, s.label, s.source_kind AS kind, s.source, s.file_count AS files, s.file_bytes, s.nar_size, "
            "s.nar_zstd_size, s.nar_xz_size, string_agg(k.chunker_id || ' zstd ' || k.zstd_level, '; ' ORDER BY k.chunker_id) "
            "AS chunkings, CAST(s.created_at AS VARCHAR) AS created_at FROM snapshots s LEFT JOIN chunkings k USING (snapshot_id) "
            "GROUP BY ALL ORDER BY s.seq"
        ).df()
    shown, note = _last_snapshots(snaps)
    sections.append(Section("Snapshots", f"{len(snaps):,} snapshot(s), in the order they were ingested.{note}", [("snapshots", _show(shown, fmt))]))

    summary = dedup_summary(dataset, snapshots)
    blob = summary.loc["blob"] if "blob" in summary.index else None
    text = (
        "stored = what a store of that level holds: the distinct objects, compressed where measured, plus the index "
        "objects it writes (stored objects likewise). logical = every occurrence; unique = each distinct object once. "
        "The saving is two factors: dedup = logical / unique and compression = unique / compressed; their product is "
        "the reduction. Space savings = 1 − stored / logical; hit rates = the share of what each snapshot needed that "
        "the store already held, by bytes and by object count. Each tree counts once at the nar, blob and directory "
        "levels; the chunk level has one row per chunking."
    )
    for warning in summary.attrs.get("warnings", []):
        text += f" Note: {warning}."
    if blob is not None:
        text += f" Whole files dedup {_fmt_ratio(blob.dedup_ratio)}; a snix store would hold {_fmt_share(blob.stored_fraction)} of the logical bytes."
    table = summary.drop(columns=["level"]).reset_index(names="level")
    sections.append(Section("Dedup at every level", text, [("levels", _show(table, fmt))], [("dedup-levels", plot_dedup_levels(summary).figure)]))

    per = snapshot_summary(dataset, snapshots)
    cols = ["label", "level", "chunker_id", "logical_bytes", "unique_bytes", "new_bytes", "shared_bytes", "new_stored_bytes",
            "hit_rate_bytes", "hit_rate_objects", "dedup_ratio"]  # fmt: skip
    shown, note = _last_snapshots(per)
    sections.append(
        Section(
            "What each snapshot adds",
            "new = distinct bytes no earlier snapshot had: what ingesting it added to a store holding the ones before; "
            f"hit rate = the share of its distinct bytes (objects) the store already held.{note}",
            [("per snapshot", _show(shown[cols], fmt))],
            [("new-bytes", plot_new_bytes(per, "blob").figure)],
        )
    )

    shared = sharing(dataset, "blob", snapshots)
    shown, note = _last_snapshots(shared)
    sections.append(
        Section(
            "Exclusive and shared bytes",
            f"exclusive = in this snapshot only; shared = also in at least one other snapshot (blob level).{note}",
            [("sharing", _show(shown.drop(columns=["snapshot_id"]), fmt))],
            [("sharing", plot_sharing(shared).figure)],
        )
    )

    dist = chunk_size_distribution(dataset, snapshots)
    stats = chunk_size_stats(dataset, snapshots)
    sections.append(
        Section(
            "Chunk sizes",
            "Distinct chunks by size against each chunker's configured minimum, average and maximum.",
            [("chunk sizes", _show(stats, fmt))],
            [("chunk-size-histogram", plot_chunk_size_histogram(dist).figure), ("chunk-size-cdf", plot_chunk_size_cdf(dist, stats).figure)],
        )
    )

    comparison = chunker_comparison(dataset, snapshots)
    figures = [("chunker-tradeoff", plot_chunker_tradeoff(comparison).figure)] if len(comparison) > 1 else []
    sections.append(
        Section(
            "Chunkers compared",
            "Dedup against the number of objects to store, per chunker (run `storelab sweep` to fill this with many).",
            [("chunkers", _show(comparison, fmt))],
            figures,
        )
    )

    refs = refcount_histogram(dataset, "chunk", snapshots)
    sections.append(
        Section(
            "Reference counts",
            "How many chunks are referenced 1, 2, 3–4, … times and the bytes behind them, as ZFS's zdb -S prints.",
            [("refcounts", _show(refs, fmt))],
            [("refcounts", plot_refcounts(refs).figure)],
        )
    )

    by_type = attribution(dataset, "extension", snapshots=snapshots)
    by_prefix = attribution(dataset, "prefix", depth=2, snapshots=snapshots)
    sections.append(
        Section(
            "Where the bytes are",
            "Blob bytes by file extension and by the first two path components.",
            [("by file type", _show(by_type, fmt)), ("by path prefix", _show(by_prefix, fmt))],
            [("by-type", plot_attribution(by_type).figure)],
        )
    )

    cost = cost_model(dataset, snapshots=snapshots)
    money = {c: (lambda v: f"${float(v):.4f}") for c in ("put_cost", "head_cost", "restore_cost", "storage_cost", "total_cost")}
    sections.append(
        Section(
            "Cost of a store",
            "A snix-layout object store at S3 Standard list prices ($0.005 per 1,000 PUT, $0.0004 per 1,000 GET/HEAD, "
            "$0.023 per GiB-month), one month.",
            [("cost model", _show(cost, fmt | money))],
        )
    )

    from storelab.models import compare_models

    models = compare_models(dataset, snapshots=snapshots)
    priced = models[models["missing"].isna()]
    lacking = "; ".join(f"{row.model} needs {row.missing}" for row in models.itertuples() if isinstance(row.missing, str))
    text = (
        "What each system would store for these snapshots (see the Store models docs page for each recipe): stored bytes "
        "with the formats' overheads, objects (= PUT requests), GETs to restore every snapshot once, the metadata-adjusted "
        "savings with 64 bytes per chunk reference; ● marks the Pareto front of fewer bytes in fewer objects."
    )
    if lacking:
        text += f" Not priced (ingest with --models to add them): {lacking}."
    columns = ["model", "stored_bytes", "objects", "restore_gets", "first_bytes", "later_added_median", "dedup_ratio",
               "compression_ratio", "savings", "adjusted_savings", "total_cost", "pareto"]  # fmt: skip
    shown_models = priced[columns].assign(pareto=priced["pareto"].map(lambda front: "●" if front else ""))
    model_fmt = fmt | {"first_bytes": _fmt_bytes, "later_added_median": _fmt_bytes, "savings": _fmt_share, "adjusted_savings": _fmt_share,
                       "total_cost": lambda v: f"${float(v):.4f}"}  # fmt: skip
    model_figures = []
    if len(priced) > 1:
        from storelab.analysis.plots import plot_store_models

        model_figures.append(("store-models", plot_store_models(models).figure))
    sections.append(Section("Store models", text, [("store models", _show(shown_models, model_fmt))], model_figures))
    return sections


def _png(figure: object) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, metadata={"Software": None})  # type: ignore[attr-defined]
    return buffer.getvalue()


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; line-height: 1.4; }
h1 { border-bottom: 2px solid #444; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.8em 0; display: block; overflow-x: auto; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; margin: 0.5em 0; } code, pre { background: #f6f6f6; padding: 2px 4px; }
.meta td { text-align: left; }
"""


def build_report(
    dataset: str | os.PathLike[str] | Dataset,
    output: str | os.PathLike[str],
    fmt: str = "html",
    command: Sequence[str] | None = None,
    snapshots: Sequence[str] | None = None,
) -> Path:
    """Write the report; returns its path.

    >>> import tempfile, pathlib
    >>> from storelab.ingest import ingest_dir, IngestOptions
    >>> tree = pathlib.Path(tempfile.mkdtemp()); _ = (tree / "a").write_bytes(b"x" * 1000)
    >>> ds = tempfile.mkdtemp() + "/ds"; _ = ingest_dir(tree, ds, "t", IngestOptions(workers=0))
    >>> out = build_report(ds, tempfile.mkdtemp() + "/r.html")
    >>> "data:image/png;base64," in out.read_text()
    True
    """
    from storelab import __version__

    if fmt not in ("html", "md"):
        raise ConfigError(f"report format is html or md, not {fmt!r}")
    target = Path(output)
    ds = dataset if isinstance(dataset, Dataset) else Dataset.open(dataset)
    sections = report_sections(ds, snapshots)
    made = datetime.now(UTC).isoformat(timespec="seconds")
    cmd = shlex.join(command) if command else shlex.join(["storelab", "report", ds.location, "-o", str(target)])
    meta = [("dataset", ds.location), ("storelab", __version__), ("command", cmd), ("made", made), ("python", sys.version.split()[0])]
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "html":
            _write(target, _html(sections, meta).encode())
        else:
            _write(target, _markdown(sections, meta, target).encode())
    except OSError as err:
        raise OutputError(f"cannot write {target}: {err.strerror or err}") from None
    finally:
        for section in sections:
            for _, figure in section.figures:
                figure.clear()  # type: ignore[attr-defined]
    return target


def _write(path: Path, data: bytes) -> None:
    from storelab.outputs import atomic_write

    atomic_write(path, data)


def _html(sections: list[Section], meta: list[tuple[str, str]]) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>storelab report</title>',
        f"<style>{_CSS}</style></head><body>",
        "<h1>storelab report</h1>",
        '<table class="meta">' + "".join(f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(v)}</code></td></tr>" for k, v in meta) + "</table>",
        "<ol>" + "".join(f'<li><a href="#s{i}">{html.escape(s.title)}</a></li>' for i, s in enumerate(sections)) + "</ol>",
    ]
    for i, section in enumerate(sections):
        parts.append(f'<section id="s{i}"><h2>{html.escape(section.title)}</h2>')
        if section.text:
            parts.append(f"<p>{html.escape(section.text)}</p>")
        for name, table in section.tables:
            parts.append(f"<h3>{html.escape(name)}</h3>")
            parts.append(table.to_html(index=False, escape=True, border=0, na_rep="–"))
        for name, figure in section.figures:
            data = base64.b64encode(_png(figure)).decode()
            parts.append(f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}"></figure>')
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _markdown(sections: list[Section], meta: list[tuple[str, str]], target: Path) -> str:
    lines = ["# storelab report", ""]
    lines += [f"- **{k}**: `{v}`" for k, v in meta]
    for section in sections:
        lines += ["", f"## {section.title}", ""]
        if section.text:
            lines += [section.text, ""]
        for name, table in section.tables:
            lines += [f"### {name}", "", _md_table(table), ""]
        for name, figure in section.figures:
            png = target.with_name(f"{target.stem}-{name}.png")
            _write(png, _png(figure))
            lines += [f"![{name}]({png.name})", ""]
    return "\n".join(lines) + "\n"


def _md_table(table: pd.DataFrame) -> str:
    def cell(value: object) -> str:
        return "–" if value is None or (isinstance(value, float) and value != value) else str(value).replace("|", "\\|")

    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *rows])
