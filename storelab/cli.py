"""``storelab …``: parse arguments, call the library, print. No logic of its own.

Built on click alone, and rich only where something is printed: every command pays for
its imports before it starts, and an ingest's scan waits for them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import cache
import math
import os
import sys
from pathlib import Path
from typing import Any

import click

from storelab import __version__
from storelab.errors import ConfigError, Interrupted, OutputError, StorelabError
from storelab.units import format_bytes, parse_size


class _Option(click.Option):
    """An option that names its section of ``--help`` (Chunking, Store, Cluster, …)."""

    def __init__(self, *args: Any, panel: str = "Options", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.panel = panel


class _WholeSummary:
    """A command's line in its group's ``--help`` is its docstring's whole first sentence
    (click would cut it at the terminal's width less the longest name)."""

    def get_short_help_str(self, limit: int = 45) -> str:
        return super().get_short_help_str(limit=300)  # type: ignore[misc]


class _Command(_WholeSummary, click.Command):
    """``--help`` lists the options section by section (click lists the arguments)."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = None if isinstance(param, click.Argument) else param.get_help_record(ctx)
            if record is not None:
                sections.setdefault(getattr(param, "panel", "Options"), []).append(record)
        for title in sorted(sections, key=lambda t: t != "Options"):  # Options first, then as declared
            with formatter.section(title):
                formatter.write_dl(sections[title])


class _Group(_WholeSummary, click.Group):
    command_class = _Command
    group_class = type  # subcommand groups (store, layers, datasets) are _Groups too


def _option(*decls: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(*decls, cls=_Option, **kwargs)


def _print_version(ctx: click.Context, _: click.Parameter, value: bool) -> None:
    if value:
        print(f"storelab {__version__}")
        ctx.exit()


@click.group(
    cls=_Group,
    name="storelab",
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 120},
)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version, help="Print the version and exit.")
def app() -> None:
    """Study deduplication in content-addressed stores.

    Ingest directory trees and NARs as snix's castore would store them (BLAKE3 digests, FastCDC
    chunks, zstd sizes, optionally into a snix-layout object store) into a Parquet dataset, then ask it
    for dedup figures at every level, chunker sweeps, what-ifs, store costs, upload speed over slow
    links and container layer plans; export it all as a report.

    \b
      storelab ingest-dir ./numpy-1.26.3 --label numpy-1.26.3 --out study/
      storelab ingest-dir ./numpy-1.26.4 --label numpy-1.26.4 --out study/
      storelab stats study/
      storelab report study/ -o study.html
    """


@cache
def _out() -> Any:
    """The console tables and summaries go to (rich loads with the first thing printed).
    Off a terminal rich would wrap at 80 columns; tables read better unwrapped in logs and CI."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=160)


def _table(**settings: Any) -> Any:
    """A rich Table whose text cells and title are shown as they are: a chunker id like
    ``[fixed/size=64KiB]`` is data, not markup (rich loads with the first table)."""
    from rich.markup import escape
    from rich.table import Table

    class PlainTable(Table):
        def add_row(self, *cells: Any, **options: Any) -> None:
            super().add_row(*(escape(c) if isinstance(c, str) else c for c in cells), **options)

    if isinstance(settings.get("title"), str):
        settings["title"] = escape(settings["title"])
    return PlainTable(**settings)


def _error_line(message: str) -> None:
    """One line on stderr, never wrapped or styled, so scripts and logs can grep it."""
    print(" ".join(message.split()), file=sys.stderr)


def _options(*decorators: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Several options as one decorator; ``--help`` lists them in the order given."""

    def apply(f: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply


_ZSTD_OPTION = _option(
    "--zstd-level", type=click.IntRange(0, 22), default=3, panel="Chunking",
    help="zstd level for measuring each distinct chunk's compressed size (snix stores level 3); 0 = don't measure.",
)  # fmt: skip
_chunking_options = _options(
    _option("--chunker", default="fastcdc2020", panel="Chunking",
            help="fastcdc2020 (what snix uses), fastcdc2016 (what attic uses) or fixed (fixed-size blocks)."),
    _option("--avg-chunk-size", default="256KiB", panel="Chunking", help="Average chunk size (fixed: the block size), e.g. 64KiB."),
    _option("--min-chunk-size", default=None, panel="Chunking", help="Smallest chunk; default avg/2 as snix."),
    _option("--max-chunk-size", default=None, panel="Chunking", help="Largest chunk; default 2×avg as snix."),
    _option("--normalization", type=click.IntRange(0, 3), default=1, panel="Chunking", help="FastCDC 2020 normalisation level."),
    _option("--seed", type=click.IntRange(0, (1 << 64) - 1), default=0, panel="Chunking",
            help="FastCDC 2020 gear-table seed (fastcdc-rs with_level_and_seed); 0 = unseeded, as snix."),
    _ZSTD_OPTION,
)  # fmt: skip
_THRESHOLD_OPTION = _option(
    "--upload-threshold", default="1MiB", panel="Store", help="Blobs below this go up in the background; larger ones inline."
)
_BUFFER_OPTION = _option("--upload-buffer", default="128MiB", panel="Store", help="Most bytes held in memory waiting for upload.")
_store_options = _options(
    _option(
        "--store", default=None, panel="Store",
        help="Also write every blob, chunk and directory to this store, laid out as snix's object store: "
        "file:///path, memory:// or s3://bucket/prefix (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID… from the environment).",
    ),
    _option("--upload-concurrency", type=click.IntRange(min=0), default=32, panel="Store",
            help="Uploads in flight per process for blobs under the threshold; 0 = upload every request in turn."),
    _THRESHOLD_OPTION,
    _BUFFER_OPTION,
)  # fmt: skip
_NAR_COMPRESSION_OPTION = _option(
    "--nar-compression", default=None, panel="Chunking",
    help="Also measure the NAR as a binary cache stores it, compressed whole: zstd (zstd -3, .nar.zst), xz (xz -6, .nar.xz), "
    "both (zstd,xz) or none. Default: zstd for ingest-nar (compressed as it streams past), none for ingest-dir (a tree's NAR "
    "is read once more to measure it). xz is slow (≈ 5 MB/s).",
)  # fmt: skip
_NORMALIZE_OPTION = _option(
    "--normalize-store-paths", is_flag=True, panel="Chunking",
    help="What-if: replace /nix/store/<hash>- hashes in file contents by a placeholder before hashing (digests then differ from the real ones).",
)  # fmt: skip
_SCHEDULER_OPTION = _option(
    "--scheduler", default=None, panel="Cluster",
    help="Run on a Dask cluster: tcp://HOST:8786, or 'local' for a cluster of --workers processes here. "
    "The dataset must be a path every worker sees, or s3://; with --store, the store too.",
)  # fmt: skip
_JSON = "as_json"


def _nar_codecs(text: str | None, default: str) -> tuple[str, ...]:
    from storelab.nar.compressed import parse_nar_codecs

    return parse_nar_codecs(default if text is None else text)


def _rewrite(normalize: bool) -> Any:
    if not normalize:
        return None
    from storelab.analysis.whatif import normalize_store_paths

    return normalize_store_paths


def _upload_options(concurrency: int, threshold: str, buffer: str):
    from storelab.stores.uploader import UploadOptions

    return UploadOptions(concurrency, parse_size(threshold), parse_size(buffer))


def _chunker_spec(chunker: str, avg: str, min_size: str | None, max_size: str | None, normalization: int, seed: int = 0):
    from storelab.chunking import default_spec, make_chunker

    spec = default_spec(
        chunker,
        parse_size(avg),
        parse_size(min_size) if min_size else None,
        parse_size(max_size) if max_size else None,
        normalization,
        seed,
    )
    make_chunker(spec)
    return spec


@app.command("ingest-dir")
@click.argument("path", metavar="PATH", help="Directory tree (or single file) to ingest.")
@_option("--out", "-o", "out_", required=True, help="Dataset folder or s3://bucket/prefix; created if missing, appended to if not.")
@_option("--label", "-l", default=None, help="Snapshot label; default: the folder's name.")
@_chunking_options
@_option("--workers", "-j", type=click.IntRange(min=0), default=None, help="Worker processes; default one per core; 0 = none.")
@_option("--strict", is_flag=True, help="Fail on an unreadable or special file instead of skipping it.")
@_option("--follow-root", is_flag=True,
         help="PATH is a symlink: ingest what it points to (default: a symlink node, as nix-store --dump writes it).")
@_store_options
@_NAR_COMPRESSION_OPTION
@_NORMALIZE_OPTION
@_SCHEDULER_OPTION
@_option("--quiet", "-q", is_flag=True, help="No progress bar, no summary line.")
@_option("--json", _JSON, is_flag=True, help="Print the new snapshot's summary as JSON.")
def ingest_dir_command(
    path: str, out_: str, label: str | None, chunker: str, avg_chunk_size: str, min_chunk_size: str | None,
    max_chunk_size: str | None, normalization: int, seed: int, zstd_level: int, workers: int | None, strict: bool, follow_root: bool,
    store: str | None, upload_concurrency: int, upload_threshold: str, upload_buffer: str, nar_compression: str | None,
    normalize_store_paths: bool, scheduler: str | None, quiet: bool, as_json: bool,
) -> None:  # fmt: skip
    """Ingest a directory tree as one snapshot of a dataset.

    Every file is read once: BLAKE3 of the file, chunks cut with the chosen chunker, BLAKE3
    of each chunk, and the zstd size of each chunk the dataset has not seen. Directories are
    encoded as castore Directory messages, so the root digest equals snix's for the same tree.
    Symlinks are recorded, never followed (a PATH that is a symlink is a symlink node, as
    nix-store --dump writes it; --follow-root ingests its target); FIFOs, sockets, devices and unreadable paths are
    skipped, warned about and listed in the snapshot (or fail the run with --strict). A
    dataset inside the tree is refused; a label used already is warned about.

    \b
    Example: storelab ingest-dir /usr/share/doc --label doc --out study/ --avg-chunk-size 64KiB
    """
    if workers != 0 and scheduler is None:
        from storelab.ingest.workers import prestart

        prestart()  # boots beside the imports below
    from storelab.ingest import IngestOptions, ingest_dir
    from storelab.ingest.progress import wants_progress

    spec = _chunker_spec(chunker, avg_chunk_size, min_chunk_size, max_chunk_size, normalization, seed)
    upload = _upload_options(upload_concurrency, upload_threshold, upload_buffer)
    options = IngestOptions(
        spec, zstd_level, workers, strict, wants_progress(quiet), store=_store_url(store), upload=upload,
        rewrite=_rewrite(normalize_store_paths), nar_compression=_nar_codecs(nar_compression, "none"), follow_root=follow_root,
    )  # fmt: skip
    if scheduler is not None:
        from storelab.ingest.distributed import cluster, ingest_dir_on_cluster

        with cluster(scheduler, workers) as client:
            result = ingest_dir_on_cluster(client, path, out_, label, options, [spec])
    else:
        result = ingest_dir(path, out_, label, options)
    _print_result(result, out_, quiet, as_json)


@app.command("ingest-nar")
@click.argument("nars", nargs=-1, metavar="NAR...",
           help="NAR files (.nar, .nar.xz, .nar.zst, .nar.bz2), http(s):// or s3:// URLs of them, or - for standard input.")
@_option("--out", "-o", "out_", required=True, help="Dataset folder or s3://bucket/prefix; created if missing, appended to if not.")
@_option("--label", "-l", default=None, help="Snapshot label (one NAR only); default: the file name.")
@_chunking_options
@_store_options
@_NAR_COMPRESSION_OPTION
@_NORMALIZE_OPTION
@_option("--from-list", default=None, panel="Sources", help="A file naming NARs (paths or URLs), one a line; # comments.")
@_option("--fetch-concurrency", type=click.IntRange(min=1), default=4, panel="Sources",
         help="URLs fetched ahead at once (each into a temporary file).")
@_option("--narinfo", default=None, panel="Sources",
         help="The NAR's .narinfo: records its store path and references, checks NarSize and NarHash (one NAR).")
@_SCHEDULER_OPTION
@_option("--workers", "-j", type=click.IntRange(min=1), default=None, panel="Cluster",
         help="With --scheduler local: worker processes of the local cluster.")
@_option("--quiet", "-q", is_flag=True, help="No progress bar, no summary line.")
@_option("--json", _JSON, is_flag=True, help="Print each new snapshot's summary as JSON.")
def ingest_nar_command(
    nars: tuple[str, ...], out_: str, label: str | None, chunker: str, avg_chunk_size: str, min_chunk_size: str | None,
    max_chunk_size: str | None, normalization: int, seed: int, zstd_level: int, store: str | None, upload_concurrency: int,
    upload_threshold: str, upload_buffer: str, nar_compression: str | None, normalize_store_paths: bool, from_list: str | None,
    fetch_concurrency: int, narinfo: str | None, scheduler: str | None, workers: int | None, quiet: bool, as_json: bool,
) -> None:  # fmt: skip
    """Ingest NAR archives, one snapshot each, as a binary cache serves them.

    Each NAR is read once, as a stream (compressed ones are decompressed on the fly): blobs
    are hashed and chunked as they pass, and the NAR's size, sha256 and nix-base32 hash are
    recorded. The castore root equals what ingest-dir gives for the tree the NAR packs. A
    NAR that breaks Nix's rules is refused with the byte offset of the mistake, and nothing
    of it is written.

    NARs can be local files or http(s):// and s3:// URLs (a slice of a binary cache), given
    as arguments or one a line in --from-list; URLs are fetched ahead, a few at a time, and
    ingested in order. Many NARs are committed together, many snapshots to a Parquet part, so
    each costs the same however many the dataset holds. The first NAR that fails stops the
    run; those before it stay committed.

    \b
    Example: storelab ingest-nar 0a1b…-hello-2.12.nar.xz --label hello-2.12 --out cache-study/
    """
    from storelab.ingest import IngestOptions
    from storelab.ingest.fetch import fetch_sources, is_remote, read_source_list
    from storelab.ingest.nar_source import ingest_nar
    from storelab.ingest.progress import wants_progress

    nars = [*(nars or []), *(read_source_list(from_list) if from_list else [])]
    if not nars:
        raise ConfigError("name at least one NAR (or --from-list FILE)")
    if label and len(nars) > 1:
        raise ConfigError("--label names one snapshot; give one NAR with it")
    if narinfo and (len(nars) > 1 or scheduler):
        raise ConfigError("--narinfo describes one NAR; give one NAR with it (and no --scheduler)")
    from storelab.nar.narinfo import load_narinfo

    info = load_narinfo(narinfo) if narinfo else None
    spec = _chunker_spec(chunker, avg_chunk_size, min_chunk_size, max_chunk_size, normalization, seed)
    upload = _upload_options(upload_concurrency, upload_threshold, upload_buffer)
    many = len(nars) > 1
    options = IngestOptions(
        spec, zstd_level, 0, False, wants_progress(quiet) and not many, store=_store_url(store), upload=upload,
        rewrite=_rewrite(normalize_store_paths), nar_compression=_nar_codecs(nar_compression, "zstd"),
    )  # fmt: skip
    if scheduler is not None:
        from storelab.ingest.distributed import cluster, ingest_nars_on_cluster

        with cluster(scheduler, workers) as client:
            ingest_nars_on_cluster(client, nars, out_, label, options, lambda r: _print_result(r, out_, quiet, as_json))
        return
    if not many:
        for source, local in fetch_sources(nars, fetch_concurrency):
            result = ingest_nar(local, out_, label, options, origin=source if is_remote(source) else None, narinfo=info)
            _print_result(result, out_, quiet, as_json)
        return
    from storelab.ingest.nar_source import ingest_nars
    from storelab.ingest.progress import CountProgress

    import time

    started = time.perf_counter()
    with CountProgress("ingest-nar", wants_progress(quiet), len(nars), "NARs") as bar:

        def done(result: Any) -> None:
            bar.advance(1, result.label)
            if as_json or not bar.enabled:
                _print_result(result, out_, quiet, as_json)

        results = ingest_nars(fetch_sources(nars, fetch_concurrency), out_, options, done)
    if bar.enabled and not as_json:
        wall = time.perf_counter() - started
        nar_bytes = sum(r.file_bytes for r in results)
        _out().print(
            f"{len(results):,} NARs → {_escape(out_)}: {format_bytes(nar_bytes)} of files in {wall:.1f} s "
            f"({len(results) / wall if wall else 0:.0f} NARs/s)",
            highlight=False,
        )


def _print_result(result: Any, out_dir: str, quiet: bool, as_json: bool) -> None:
    summary = {
        "snapshot_id": result.snapshot_id,
        "label": result.label,
        "root": _node_json(result.root),
        "files": result.files,
        "directories": result.directories,
        "symlinks": result.symlinks,
        "file_bytes": result.file_bytes,
        "blobs": result.blobs,
        "chunks": result.chunks,
        "skipped": len(result.skipped),
        "wall_seconds": round(result.wall_seconds, 3),
        "mb_per_second": round(result.throughput / 1e6, 1),
    }
    ops = result.store_ops
    if ops is not None:
        summary["store_requests"] = {
            "put": ops.put_count, "put_bytes": ops.put_bytes, "head": ops.head_count, "get": ops.get_count, "retries": ops.retry_count,
        }  # fmt: skip
    if as_json:
        print(json.dumps(summary, indent=1))
    elif not quiet:
        _out().print(
            f"[bold]{result.label}[/] → {out_dir} (snapshot {result.snapshot_id}): {result.files} files, "
            f"{format_bytes(result.file_bytes)}, {result.blobs} blobs, {result.chunks} chunks in "
            f"{result.wall_seconds:.2f} s ({summary['mb_per_second']} MB/s)"
            + (f", [yellow]{len(result.skipped)} skipped[/]" if result.skipped else "")
            + f"\nroot {summary['root']['kind']} {summary['root'].get('digest', summary['root'].get('target', ''))}"
            + (
                f"\nstore: {ops.put_count:,} PUT ({format_bytes(ops.put_bytes)}), {ops.head_count:,} HEAD"
                + (f", {ops.retry_count:,} retried" if ops.retry_count else "")
                if ops is not None
                else ""
            ),
            highlight=False,
        )


def _store_url(store: str | None) -> Any:
    """Open the store now (a bad URL fails before any work). A memory store is passed on as
    the object (it lives in this process); any other as its URL, for worker processes."""
    if store is None:
        return None
    from storelab.stores import open_store

    opened = open_store(store)
    return store if opened.shareable else opened


@app.command("render-nar")
@click.argument("dataset", metavar="DATASET", help="Dataset folder or s3://bucket/prefix.")
@click.argument("snapshot", metavar="SNAPSHOT", help="Snapshot id or label.")
@_option("--store", required=True, help="The store the snapshot was ingested with --store into.")
@_option("--output", "-o", required=True, help="NAR file to write; - for standard output.")
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
    from storelab.outputs import atomic_output

    try:
        with atomic_output(output) as f:
            for piece in pieces:
                f.write(piece)
    except OSError as error:
        raise OutputError(f"cannot write {output}: {error.strerror or error}") from None


def _node_json(node: Any) -> dict[str, Any]:
    from storelab.castore import DirectoryNode, FileNode

    if isinstance(node, DirectoryNode):
        return {"kind": "directory", "digest": node.digest.hex(), "size": node.size}
    if isinstance(node, FileNode):
        return {"kind": "file", "digest": node.digest.hex(), "size": node.size, "executable": node.executable}
    return {"kind": "symlink", "target": os.fsdecode(node.target)}


def _jsonable(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def clean(value: Any) -> Any:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        if hasattr(value, "isoformat"):  # timestamps
            return value.isoformat()
        if hasattr(value, "item"):
            value = value.item()
        return None if value is getattr(__import__("pandas"), "NA") else value

    return [{k: clean(v) for k, v in r.items()} for r in records]


def _missing(value: Any) -> bool:
    """None, NaN and pandas' NA (whose comparisons answer NA, which has no truth value)."""
    if value is None:
        return True
    try:
        return bool(value != value)
    except TypeError:
        return True


def _ratio(value: Any) -> str:
    return "–" if _missing(value) else f"{value:.2f}×"


def _pct(value: Any) -> str:
    return "–" if _missing(value) else f"{100 * value:.1f} %"


def _size(value: Any) -> str:
    return "–" if _missing(value) else format_bytes(int(value))


@app.command("stats")
@click.argument("dataset", metavar="DATASET", help="Dataset folder or s3://bucket/prefix.")
@_option("--snapshot", "-s", multiple=True,
         help="Only these snapshots (id or label; repeatable). Figures are over them; 'new' stays relative to every earlier "
         "snapshot of the dataset.")
@_option("--last", type=click.IntRange(min=0), default=20, show_default=True,
         help="Per-snapshot rows: the last N snapshots (0 = every one); --snapshot shows those asked for.")
@_option("--json", _JSON, is_flag=True, help="Print the same figures as JSON (every snapshot).")
@_option("--cost", is_flag=True, panel="Cost model", help="Also price the store: requests and storage per chunker.")
@_option("--put-price", type=click.FloatRange(min=0), default=0.005, panel="Cost model", help="$ per 1,000 PUT requests (S3 Standard).")
@_option("--get-price", type=click.FloatRange(min=0), default=0.0004, panel="Cost model", help="$ per 1,000 GET/HEAD requests (S3 Standard).")
@_option("--storage-price", type=click.FloatRange(min=0), default=0.023, panel="Cost model", help="$ per GiB-month stored (S3 Standard).")
@_option("--months", type=click.FloatRange(min=0), default=1.0, panel="Cost model", help="Months the objects are kept.")
def stats_command(
    dataset: str, snapshot: tuple[str, ...] | list[str] | None, last: int, as_json: bool, cost: bool, put_price: float,
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
    snapshot = list(snapshot) or None  # click gives a tuple
    from storelab.analysis import dedup_summary, snapshot_summary

    if cost:
        _print_cost(dataset, snapshot, as_json, put_price, get_price, storage_price, months)
        return
    overall = dedup_summary(dataset, snapshot)
    per = snapshot_summary(dataset, snapshot)
    warnings = overall.attrs.get("warnings", [])
    if as_json:
        print(
            json.dumps(
                {
                    "dataset": str(dataset),
                    "overall": _jsonable(overall.reset_index(names="row").to_dict("records")),
                    "snapshots": _jsonable(per.to_dict("records")),
                    "warnings": warnings,
                },
                indent=1,
                default=str,
            )
        )
        return
    count = per["snapshot_id"].nunique()
    chunk_rows = overall[overall["level"] == "chunk"]
    levels = overall if len(chunk_rows) <= 1 else overall[overall["level"] != "chunk"]
    table = _table(title=f"dedup over {count:,} snapshot(s) of {dataset}", title_justify="left")
    for col in ("level", "stored", "objects", "logical", "unique", "compressed", "dedup × compression = reduction", "savings", "hit rate bytes / objects"):
        table.add_column(col, justify="left" if col == "level" else "right")
    for name, row in levels.iterrows():
        table.add_row(
            str(name), _size(row.stored_bytes), f"{row.stored_objects:,}", _size(row.logical_bytes), _size(row.unique_bytes),
            _size(row.compressed_bytes), _factors(row), _pct(row.space_savings), f"{_pct(row.hit_rate_bytes)} / {_pct(row.hit_rate_objects)}",
        )  # fmt: skip
    if len(chunk_rows) > 1:
        table.add_row("chunk", "", "", "", "", "", f"{len(chunk_rows)} chunkings: see below", "", "")
    _out().print(table)
    if len(chunk_rows) > 1:
        _print_chunkings(chunk_rows)
    for warning in warnings:
        _out().print(f"[yellow]note:[/] {_escape(warning)}")
    shown = per if snapshot or not last else per[per["seq"] >= sorted(per["seq"].unique())[-last:][0]]
    more = "" if len(shown) == len(per) else f"; the last {last} of {count:,} (--last 0 for all)"
    snaps = _table(title=f"per snapshot, in creation order; new = not in any earlier snapshot{more}", title_justify="left")
    for col in ("snapshot", "level", "logical", "unique", "new", "new stored", "hit rate bytes / objects", "dedup"):
        snaps.add_column(col, justify="left" if col in ("snapshot", "level") else "right")
    previous = None
    for row in shown.itertuples():
        level = row.level if row.level != "chunk" or len(chunk_rows) <= 1 else f"chunk {row.chunker_id}"
        snaps.add_row(
            row.label if row.snapshot_id != previous else "", level, _size(row.logical_bytes), _size(row.unique_bytes),
            _size(row.new_bytes), _size(row.new_stored_bytes), f"{_pct(row.hit_rate_bytes)} / {_pct(row.hit_rate_objects)}",
            _ratio(row.dedup_ratio), end_section=row.level == "directory",
        )  # fmt: skip
        previous = row.snapshot_id
    _out().print(snaps)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _factors(row: Any) -> str:
    """``dedup × compression = reduction``, each shown only where it was measured."""
    if _missing(row.compression_ratio):
        return _ratio(row.dedup_ratio)
    return f"{_ratio(row.dedup_ratio)} × {_ratio(row.compression_ratio)} = {_ratio(row.reduction_ratio)}"


def _print_chunkings(rows: Any) -> None:
    """One line per chunking, with bars of its stored bytes and its object count (each
    against the largest), so the trade-off reads at a glance at any number of chunkings."""
    most_bytes = max(float(v) for v in rows["stored_bytes"]) or 1.0
    most_objects = max(float(v) for v in rows["stored_objects"]) or 1.0
    table = _table(title="chunkings (the chunk level; stored = compressed chunks + blob index objects)", title_justify="left")
    for col in ("chunker", "zstd", "snapshots", "stored", "objects", "mean chunk", "dedup × compression = reduction", "savings"):
        table.add_column(col, justify="left" if col == "chunker" else "right", overflow="fold", no_wrap=col != "chunker")
    table.add_column("stored bytes", justify="left", no_wrap=True)
    table.add_column("objects", justify="left", no_wrap=True)
    for row in rows.sort_values(["stored_bytes", "stored_objects"]).itertuples():
        mean = row.unique_bytes / row.unique_objects if row.unique_objects else None
        table.add_row(
            str(row.chunker_id), str(row.zstd_level), f"{row.snapshots:,}", _size(row.stored_bytes), f"{row.stored_objects:,}",
            _size(mean), _factors(row), _pct(row.space_savings), _bar(row.stored_bytes / most_bytes),
            _bar(row.stored_objects / most_objects),
        )  # fmt: skip
    _out().print(table)


def _bar(share: float, width: int = 16) -> str:
    """A bar of ``share`` × ``width`` cells, in eighths of a cell."""
    eighths = round(max(0.0, min(1.0, float(share))) * width * 8)
    return "█" * (eighths // 8) + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[eighths % 8]


def _print_cost(
    dataset: str, snapshot: list[str] | None, as_json: bool, put: float, get: float, storage: float, months: float
) -> None:
    from storelab.analysis import Prices, cost_model, measured_requests

    prices = Prices(put, get, storage, months)
    model = cost_model(dataset, prices, snapshot)
    measured = measured_requests(dataset, snapshot)
    if as_json:
        print(
            json.dumps(
                {
                    "dataset": str(dataset),
                    "prices": {"put_per_1000": put, "get_per_1000": get, "storage_per_gib_month": storage, "months": months},
                    "break_even_object_size": None if math.isinf(prices.break_even_object_size) else prices.break_even_object_size,
                    "model": _jsonable(model.to_dict("records")),
                    "measured": _jsonable(measured.to_dict("records")),
                },
                indent=1,
            )
        )
        return
    table = _table(
        title=f"cost of a snix-layout store holding {dataset} (${put:g}/1k PUT, ${get:g}/1k GET, ${storage:g}/GiB-month, {months:g} month(s))",
        title_justify="left",
    )
    for col in ("chunker", "objects", "mean object", "stored", "PUT $", "HEAD $", "storage $", "total $", "restore GET $"):
        table.add_column(col, justify="left" if col == "chunker" else "right")
    for row in model.itertuples():
        table.add_row(
            row.chunker_id, f"{row.put_requests:,}", _size(row.mean_stored_object), _size(row.stored_bytes),
            f"{row.put_cost:.4f}", f"{row.head_cost:.4f}", f"{row.storage_cost:.4f}", f"{row.total_cost:.4f}",
            f"{row.restore_cost:.4f}",
        )  # fmt: skip
    _out().print(table)
    if not math.isinf(prices.break_even_object_size):
        _out().print(
            f"an object under {format_bytes(int(prices.break_even_object_size))} costs more to PUT once than to keep "
            f"for {months:g} month(s) at these prices",
            highlight=False,
        )
    if len(measured):
        seen = _table(title="requests the --store ingests made", title_justify="left")
        for col in ("snapshot", "store", "PUT", "PUT bytes", "HEAD", "GET", "retries"):
            seen.add_column(col, justify="left" if col in ("snapshot", "store") else "right")
        for row in measured.itertuples():
            seen.add_row(
                row.label, row.store, f"{row.store_put_count:,}", _size(row.store_put_bytes), f"{row.store_head_count:,}",
                f"{row.store_get_count:,}", f"{row.store_retry_count:,}",
            )  # fmt: skip
        _out().print(seen)


@app.command("snapshots")
@click.argument("dataset", metavar="DATASET", help="Dataset folder or s3://bucket/prefix.")
@_option("--remove", multiple=True, metavar="ID|LABEL",
         help="Remove these snapshots (repeatable), all at once: a crash leaves every one of them or none.")
@_option("--last", type=click.IntRange(min=0), default=50, show_default=True, help="List the last N snapshots (0 = every one).")
@_option("--json", _JSON, is_flag=True, help="Print the list as JSON (every snapshot).")
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
            _out().print(f"removed {len(ids)} snapshot(s) from {_escape(ds.location)}: {', '.join(ids)}", highlight=False)
            return
    from storelab.analysis import list_snapshots

    if not ds.snapshot_ids():
        if as_json:
            print("[]")
        else:
            _out().print(f"{_escape(ds.location)}: no snapshots", highlight=False)
        return
    frame = list_snapshots(ds)
    shown = frame if as_json or not last else frame.tail(last)
    more = "" if len(shown) == len(frame) else f" (the last {last}; --last 0 for all)"
    _emit(
        shown, as_json, f"{len(frame):,} snapshot(s) in {ds.location}{more}",
        ("label", "id", "source", "chunkings", "files", "file bytes", "NAR", ".nar.zst", ".nar.xz", "created"),
        lambda row: (
            row.label or "", row.snapshot_id, f"{row.source_kind} {row.source}", row.chunkings.replace("; ", "\n"),
            f"{row.files:,}", _size(row.file_bytes), _size(row.nar_size), _size(row.nar_zstd_size), _size(row.nar_xz_size),
            str(row.created_at)[:19],
        ),
    )  # fmt: skip


@app.command("compact")
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
    _out().print(
        f"{_escape(ds.location)}: {len(before)} part(s) → {len(after)}, {sum(p.snapshot_count for p in after):,} snapshot(s)",
        highlight=False,
    )


@app.command("sweep")
@click.argument("path", metavar="PATH", help="Directory tree to chunk every way.")
@_option("--out", "-o", "out_", required=True, help="Dataset folder or s3://bucket/prefix; one snapshot, every chunking of it, is added.")
@_option("--chunker", default="fastcdc2020,fastcdc2016,fixed", panel="Chunking",
         help="Chunkers, comma-separated: fastcdc2020, fastcdc2016, fixed.")
@_option("--avg-chunk-size", default="16KiB,64KiB,256KiB,1MiB", panel="Chunking",
         help="Average sizes, comma-separated (min = avg/2, max = 2·avg).")
@_option("--label", "-l", default=None, help="Snapshot label; default: the folder's name.")
@_ZSTD_OPTION
@_option("--workers", "-j", type=click.IntRange(min=0), default=None, help="Worker processes; default one per core; 0 = none.")
@_option("--follow-root", is_flag=True, help="PATH is a symlink: sweep what it points to.")
@_SCHEDULER_OPTION
@_option("--quiet", "-q", is_flag=True, help="No progress bar.")
@_option("--json", _JSON, is_flag=True, help="Print the comparison as JSON.")
def sweep_command(
    path: str, out_: str, chunker: str, avg_chunk_size: str, label: str | None, zstd_level: int, workers: int | None,
    follow_root: bool, scheduler: str | None, quiet: bool, as_json: bool,
) -> None:  # fmt: skip
    """Chunk the same tree under every combination of chunker and average size.

    Each file is read once per sweep, not once per combination. The tree becomes one
    snapshot recorded under every chunking (its nodes and directories once, its blobs and
    chunks once per chunking), so `stats`, `report` and the notebooks compare the chunkings
    while counting the tree once.

    \b
    Example: storelab sweep ./numpy-1.26.4 --chunker fastcdc2020,fixed --avg-chunk-size 16KiB,64KiB,256KiB -o sweep/
    """
    if workers != 0 and scheduler is None:
        from storelab.ingest.workers import prestart

        prestart()
    from storelab.analysis import chunker_comparison
    from storelab.chunking import default_spec
    from storelab.ingest import IngestOptions, sweep_dir
    from storelab.ingest.progress import wants_progress

    names = _csv(chunker, str.strip, "--chunker")
    sizes = _csv(avg_chunk_size, parse_size, "--avg-chunk-size")
    specs = [default_spec(name, size) for name in names for size in sizes]
    for spec in specs:
        _chunker_spec(spec.name, str(spec.avg_size), None, None, spec.normalization)
    options = IngestOptions(zstd_level=zstd_level, workers=workers, progress=wants_progress(quiet), follow_root=follow_root)
    if scheduler is not None:
        from storelab.ingest.distributed import cluster, ingest_dir_on_cluster

        with cluster(scheduler, workers) as client:
            result = ingest_dir_on_cluster(client, path, out_, label, options, specs)
    else:
        result = sweep_dir(path, out_, specs, label, options)
    comparison = chunker_comparison(out_, [result.snapshot_id])
    _emit(
        comparison, as_json, f"{path}: {len(specs)} chunkings of snapshot {result.snapshot_id} → {out_}",
        ("chunker", "avg", "stored", "objects", "mean chunk", "unique", "dedup", "compression", "savings"),
        lambda row: (
            row.chunker, _size(row.avg_size), _size(row.stored_bytes), f"{row.stored_objects:,}", _size(row.mean_chunk),
            _size(row.unique_bytes), _ratio(row.dedup_ratio), _ratio(row.compression_ratio), _pct(row.space_savings),
        ),
    )  # fmt: skip


def _emit(frame: Any, as_json: bool, title: str, columns: Sequence[str], cells: Callable[[Any], Sequence[str]]) -> None:
    """A DataFrame as JSON records, or as a table (the first column left-aligned)."""
    if as_json:
        print(json.dumps(_jsonable(frame.to_dict("records")), indent=1))
        return
    table = _table(title=title, title_justify="left")
    for number, col in enumerate(columns):
        table.add_column(col, justify="left" if number == 0 else "right", overflow="fold")
    for row in frame.itertuples():
        table.add_row(*cells(row))
    _out().print(table)


@app.command("what-if")
@click.argument("dataset", metavar="DATASET", help="Dataset whose snapshots' sources are still on disk.")
@_option("--normalize-store-paths", is_flag=True,
         help="Replace the 32-character hash of every /nix/store/<hash>- in file contents by a placeholder.")
@_option("--out", "-o", "out_dir", default=None, help="Keep the normalised dataset here (default: thrown away).")
@_option("--workers", "-j", type=click.IntRange(min=0), default=None, help="Worker processes; 0 = none.")
@_option("--json", _JSON, is_flag=True, help="Print the comparison as JSON.")
def what_if_command(dataset: str, normalize_store_paths: bool, out_dir: str | None, workers: int | None, as_json: bool) -> None:
    """How much more would dedup if the data were changed before chunking.

    --normalize-store-paths answers attic's open question: store paths embed their
    dependencies' hashes, so a rebuild against a new dependency changes bytes in every
    file that names it. Every snapshot's source is read again with those hashes replaced
    by a same-length placeholder, chunked with the snapshot's own chunker, and compared
    with the dataset as it is.

    \b
    Example: storelab what-if --normalize-store-paths cache-study/
    """
    from storelab.analysis.whatif import what_if_normalized
    from storelab.ingest.progress import wants_progress

    if not normalize_store_paths:
        raise ConfigError("say what to change: --normalize-store-paths")
    comparison = what_if_normalized(dataset, out_dir, workers, wants_progress(as_json))
    _emit(
        comparison, as_json, f"{dataset}: with /nix/store hashes normalised",
        ("level", "unique", "unique normalised", "stored", "stored normalised", "dedup", "dedup normalised", "saved"),
        lambda row: (
            row.level if not row.chunker_id else f"chunk [{row.chunker_id}]", _size(row.unique_bytes), _size(row.unique_bytes_normalized),
            _size(row.stored_bytes), _size(row.stored_bytes_normalized), _ratio(row.dedup_ratio), _ratio(row.dedup_ratio_normalized),
            f"{_size(row.saved_bytes)} ({_pct(row.saved_share)})",
        ),
    )  # fmt: skip


@app.command("report")
@click.argument("dataset", metavar="DATASET", help="Dataset folder or s3://bucket/prefix.")
@_option("--output", "-o", default="report.html", help="Report file (report.html, or report.md with --format md).")
@_option("--format", "fmt", default="html", help="html (one self-contained file) or md (Markdown, PNGs beside it).")
@_option("--snapshot", "-s", multiple=True, help="Only these snapshots (id or label); repeatable.")
def report_command(dataset: str, output: str, fmt: str, snapshot: tuple[str, ...] | list[str] | None) -> None:
    """Write every analysis of a dataset, figures embedded, into one report.

    The HTML file needs no network: figures are embedded PNGs, styles inline, no scripts.
    It names the storelab version, the command that made it and the dataset's snapshots.

    \b
    Example: storelab report study/ -o study.html
    """
    snapshot = list(snapshot) or None  # click gives a tuple
    from storelab.report import build_report

    command = ["storelab", *sys.argv[1:]] if sys.argv and "report" in sys.argv else None
    path = build_report(dataset, output, fmt, command, snapshot)
    _out().print(f"report → {path}", highlight=False)


@app.group("store")
def store_app() -> None:
    """Look after a store written with --store."""


@store_app.command("verify")
@click.argument("url", metavar="URL", help="Store URL: file:///path, s3://bucket/prefix.")
@_option("--max-chunk-size", default="64MiB", help="Refuse any chunk that decompresses past this (zstd bombs).")
@_option("--json", _JSON, is_flag=True, help="Print the report as JSON.")
def store_verify_command(url: str, max_chunk_size: str, as_json: bool) -> None:
    """Re-read every object of a store and check it; exit 1 if anything is missing or corrupt.

    Every chunk is decompressed (bounded) and its BLAKE3 compared with its name; every blob
    index must name chunks that exist with the recorded sizes and make up the blob; every
    directory closure must start at its root, hold only directories reachable from it, and
    name only blobs the store has.

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
        print(
            json.dumps(
                {
                    "store": url,
                    "ok": report.ok,
                    "chunks": report.chunks,
                    "chunk_bytes": report.chunk_bytes,
                    "blobs": report.blobs,
                    "directory_closures": report.directory_closures,
                    "directories": report.directories,
                    "problems": [{"key": p.key, "kind": p.kind, "detail": p.detail} for p in report.problems],
                },
                indent=1,
            )
        )
    else:
        for problem in report.problems[:50]:
            _out().print(str(problem), highlight=False, soft_wrap=True)
        if len(report.problems) > 50:
            _out().print(f"… and {len(report.problems) - 50} more problems (--json lists them all)")
        verdict = "[green]ok[/]" if report.ok else f"[red]{len(report.problems)} problem(s)[/]"
        _out().print(
            f"{url}: {report.chunks:,} chunks ({format_bytes(report.chunk_bytes)}), {report.blobs:,} blobs, "
            f"{report.directory_closures:,} directory closures ({report.directories:,} directories): {verdict}",
            highlight=False,
        )
    if not report.ok:
        raise click.exceptions.Exit(1)


def _csv(text: str, parse: Any, what: str) -> list[Any]:
    try:
        values = [parse(part) for part in text.split(",") if part.strip()]
    except (ValueError, StorelabError) as error:
        raise ConfigError(f"{what}: {error}") from None
    if not values:
        raise ConfigError(f"{what}: give at least one value")
    return values


@app.command("bench-upload")
@click.argument("source", metavar="TREE|NAR", help="A directory tree, or a NAR file.")
@_option("--rtt", default="0ms,1ms,5ms,20ms", help="Round-trip times to simulate, comma-separated.")
@_option("--concurrency", default="1,8,32,128", help="Upload concurrencies to try, comma-separated.")
@_option("--bandwidth", default=None, help="Link bandwidth per second (e.g. 100MiB); default unlimited.")
@_THRESHOLD_OPTION
@_BUFFER_OPTION
@_option("--out", "-o", "out_dir", default="build/bench-upload", help="Folder for upload.parquet and upload.png.")
@_option("--json", _JSON, is_flag=True, help="Print the table as JSON.")
def bench_upload_command(
    source: str, rtt: str, concurrency: str, bandwidth: str | None, upload_threshold: str, upload_buffer: str, out_dir: str,
    as_json: bool,
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
    from storelab.analysis.upload import upload_grid
    from storelab.stores.latency import parse_duration

    rtts = _csv(rtt, parse_duration, "--rtt")
    levels = _csv(concurrency, int, "--concurrency")
    if any(level < 1 for level in levels):
        raise ConfigError("--concurrency: levels must be at least 1 (the sequential run is always made)")
    if not os.path.exists(source):
        raise StorelabError(f"{source}: no such file or directory")
    table = _table(title=f"upload of {source} through a simulated link", title_justify="left")
    for col in ("RTT", "mode", "concurrency", "wall", "requests", "PUT", "HEAD", "speedup"):
        table.add_column(col, justify="left" if col == "mode" else "right")

    def show(row: dict[str, Any]) -> None:
        if not as_json:
            print(
                f"  RTT {row['rtt_ms']:g} ms, {row['mode']} {row['concurrency'] or ''}: {row['wall_seconds']:.2f} s",
                file=sys.stderr,
            )

    grid = upload_grid(
        source, rtts, levels, parse_size(bandwidth) if bandwidth else None, parse_size(upload_threshold), parse_size(upload_buffer), on_run=show
    )
    _write_upload_outputs(grid, Path(out_dir))
    if as_json:
        print(json.dumps(_jsonable(grid.to_dict("records")), indent=1))
        return
    for row in grid.itertuples():
        table.add_row(
            f"{row.rtt_ms:g} ms", row.mode, str(row.concurrency or "–"), f"{row.wall_seconds:.2f} s", f"{row.requests:,}",
            f"{row.put_count:,}", f"{row.head_count:,}", f"{row.speedup:.1f}×",
        )  # fmt: skip
    _out().print(table)
    _out().print(f"table: {Path(out_dir) / 'upload.parquet'}  plot: {Path(out_dir) / 'upload.png'}", highlight=False)


def _write_upload_outputs(grid: Any, folder: Path) -> None:
    from storelab.analysis.plots import plot_upload_speedup

    from storelab.outputs import atomic_output

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_output(folder / "upload.parquet") as f:
            grid.to_parquet(f, index=False)
        ax = plot_upload_speedup(grid)
        with atomic_output(folder / "upload.png") as f:
            ax.figure.savefig(f, format="png", dpi=120)
    except OSError as error:
        raise OutputError(f"cannot write {folder}: {error.strerror or error}") from None


@app.group("layers")
def layers_app() -> None:
    """Container layer study: group an image's store paths into layers and simulate pulls through a layer cache."""


AlgorithmHelp = (
    "popularity (Nixery: dominator tree, popularity × size merges), size-first (nixpkgs dockerTools' auto-layer), "
    "per-path (one layer per path while the budget lasts) or single (one layer)"
)
_BUDGET_OPTION = _option("--budget", type=click.IntRange(min=1), default=94, help="Most layers of store paths (the symlink layer comes on top).")
def _popularity(path: str | None) -> dict[str, int] | None:
    from storelab.layers import load_popularity

    return load_popularity(path) if path else None


@layers_app.command("plan")
@click.argument("closure", metavar="CLOSURE.json",
           help="Runtime graph: exportReferencesGraph JSON or `nix path-info --json --recursive` output.")
@_option("--algorithm", "-a", default="popularity", help=AlgorithmHelp)
@_BUDGET_OPTION
@_option("--popularity", default=None,
         help="JSON map of path name (without /nix/store/<hash>-) → reference count; default: every path 1.")
@_option("--root", default=None, help="With a DATASET: the image's top-level store path (or snapshot label).")
@_option("--json", _JSON, is_flag=True, help="Print the plan as JSON (every member path).")
def layers_plan_command(closure: str, algorithm: str, budget: int, popularity: str | None, root: str | None, as_json: bool) -> None:
    """Print the layers one image gets: member paths, bytes, merge rating.

    CLOSURE.json may also be a dataset of NARs ingested with --narinfo: the closure is then
    rebuilt from the snapshots' store paths and references (--root picks the image).

    \b
    Example: storelab layers plan closure.json --algorithm size-first --budget 20
    """
    from storelab.layers import graphs_from_dataset, load_graph, path_name, plan_layers

    if Path(closure).is_dir():
        graph = graphs_from_dataset(closure, [root] if root else None)[0]
    else:
        graph = load_graph(closure)
    plan = plan_layers(graph, algorithm, budget, _popularity(popularity))
    if as_json:
        layers = [
            {"identity": l.identity, "kind": l.kind, "nar_size": l.nar_size, "rating": l.rating, "members": list(l.members)}
            for l in plan.layers
        ]
        print(json.dumps({"image": plan.image, "algorithm": algorithm, "budget": budget, "nar_size": plan.nar_size, "layers": layers}, indent=1))
        return
    table = _table(
        title=f"{plan.image}: {len(graph.paths)} paths, {format_bytes(plan.nar_size)} in {len(plan.layers)} layers ({algorithm}, budget {budget})",
        title_justify="left",
    )
    for col in ("#", "paths", "bytes", "rating", "layer", "members"):
        table.add_column(col, justify="left" if col in ("layer", "members") else "right")
    for number, layer in enumerate(plan.layers):
        names = [path_name(m) for m in layer.members] or ["(the image's symlink farm)"]
        shown = ", ".join(names[:4]) + (f", … {len(names) - 4} more" if len(names) > 4 else "")
        table.add_row(str(number), str(len(layer.members)), _size(layer.nar_size), f"{layer.rating:,}" if layer.rating else "–", layer.identity[:12], shown)
    _out().print(table)


@layers_app.command("simulate")
@click.argument("images", metavar="IMAGES_DIR", help="Folder of image closures (*.json), pulled in name order.")
@_option("--algorithm", "-a", default="popularity,size-first,per-path,single", help="Comma-separated: " + AlgorithmHelp)
@_BUDGET_OPTION
@_option("--popularity", default=None, help="Popularity JSON; default IMAGES_DIR/popularity.json if it exists, else every path 1.")
@_option("--out", "-o", "out_dir", default=None, help="Also write the table to OUT/pulls.parquet.")
@_option("--root", multiple=True, help="With a DATASET of NARs: an image's top-level store path or label; repeat, in pull order.")
@_option("--json", _JSON, is_flag=True, help="Print the table as JSON.")
def layers_simulate_command(
    images: str, algorithm: str, budget: int, popularity: str | None, out_dir: str | None, root: tuple[str, ...] | list[str] | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Pull a sequence of images through a registry's layer cache, for each algorithm.

    IMAGES_DIR may also be a dataset of NARs ingested with --narinfo: each --root is an image
    whose closure comes from the snapshots' store paths and references.

    Each image is planned, then pulled: a layer whose identity (hash of its member paths) is
    already cached is reused, any other is pulled. Prints bytes pulled per image, layers
    reused, hit rates and what the registry stores; totals per algorithm at the end.

    \b
    Example: storelab datasets fetch debian-closures && storelab layers simulate build/datasets/debian-closures
    """
    root = list(root) or None  # click gives a tuple
    from storelab.layers import ALGORITHMS, load_images, simulate_pulls

    algorithms = [a.strip() for a in algorithm.split(",") if a.strip()]
    for name in algorithms:
        if name not in ALGORITHMS:
            raise ConfigError(f"unknown layering algorithm {name!r} (one of {', '.join(ALGORITHMS)})")
    from storelab.layers import graphs_from_dataset

    is_dataset = (Path(images) / "_storelab.json").exists()
    graphs = graphs_from_dataset(images, root) if is_dataset else load_images(images)
    default_pop = Path(images) / "popularity.json"
    pop_file = popularity or (str(default_pop) if default_pop.exists() else None)
    pulls = simulate_pulls(graphs, algorithms, budget, _popularity(pop_file))
    if out_dir:
        folder = Path(out_dir)
        try:
            from storelab.outputs import atomic_output

            folder.mkdir(parents=True, exist_ok=True)
            with atomic_output(folder / "pulls.parquet") as f:
                pulls.to_parquet(f, index=False)
        except OSError as error:
            raise OutputError(f"cannot write {folder}: {error.strerror or error}") from None
    if as_json:
        print(json.dumps(_jsonable(pulls.to_dict("records")), indent=1))
        return
    table = _table(
        title=f"pulling {len(graphs)} images from {images} (budget {budget}, popularity: {pop_file or 'none'})", title_justify="left"
    )
    for col in ("algorithm", "image", "layers", "reused", "pulled", "reused bytes", "byte hit", "registry"):
        table.add_column(col, justify="left" if col in ("algorithm", "image") else "right")
    for name in algorithms:
        runs = pulls[pulls.algorithm == name]
        for row in runs.itertuples():
            table.add_row(
                name if row.step == 0 else "", row.image, str(row.layers), str(row.layers_reused), _size(row.bytes_pulled),
                _size(row.bytes_reused), _pct(row.byte_hit_rate), _size(row.cache_bytes),
            )  # fmt: skip
        pulled, image_bytes = int(runs.bytes_pulled.sum()), int(runs.image_bytes.sum())
        table.add_row(
            "", "[bold]total[/]", str(int(runs.layers.sum())), str(int(runs.layers_reused.sum())), _size(pulled),
            _size(image_bytes - pulled), _pct(1 - pulled / image_bytes if image_bytes else 0), _size(runs.cache_bytes.iloc[-1]),
            end_section=True,
        )  # fmt: skip
    _out().print(table)


@app.group("datasets")
def datasets_app() -> None:
    """Real corpora to study: the ones shipped in datasets/ (checked against their manifests) and ones fetched from PyPI and Debian."""


@datasets_app.command("list")
def datasets_list_command() -> None:
    """List the shipped corpora: archives (unpack, then ingest) and closures (for `storelab layers`);
    `storelab datasets fetch` prepares larger ones."""
    from storelab.datasets import FETCHABLE, list_samples

    for manifest in list_samples():
        total = sum(f.size for f in manifest.files)
        _out().print(f"[bold]{manifest.name}[/]  {len(manifest.files)} {manifest.kind}, {format_bytes(total)}  ({manifest.folder})", highlight=False)
        _out().print(f"  {manifest.description}", highlight=False)
        for item in manifest.files:
            _out().print(f"  {item.label:<22} {format_bytes(item.size):>10}  sha256 {item.sha256[:16]}…  ({item.fetched_with})", highlight=False)
    for name, (what, _) in FETCHABLE.items():
        _out().print(f"[bold]{name}[/] (storelab datasets fetch {name}): {what}", highlight=False)


@datasets_app.command("unpack")
@click.argument("name", metavar="NAME", help="Corpus name, e.g. pypi-sample.")
@_option("--to", default="build/samples", help="Folder to unpack into; one sub-folder per snapshot.")
def datasets_unpack_command(name: str, to: str) -> None:
    """Check every archive's sha256, unpack each to a tree, print the trees' paths (one a line).

    \b
    Example: for t in $(storelab datasets unpack pypi-sample); do storelab ingest-dir $t -o study/; done
    """
    from storelab.datasets import unpack_sample

    for _, tree in unpack_sample(name, to):
        print(tree)


@datasets_app.command("fetch")
@click.argument("name", metavar="NAME", help="pypi-series, debian-packages or debian-closures.")
@click.argument("args", nargs=-1, metavar="[ARGS]…",
           help="pypi-series: PROJECT [VERSION…]; debian-packages: PACKAGE…; debian-closures: PACKAGE…")
@_option("--to", default=None, help="Folder to write into; default build/datasets/NAME.")
def datasets_fetch_command(name: str, args: tuple[str, ...], to: str | None) -> None:
    """Prepare a real corpus no one here wrote, with a manifest (sizes, sha256, the fetching command).

    pypi-series: consecutive releases of a wheel through `pip download` (default numpy
    1.26.0–1.26.4), unpacked to one tree each. debian-packages: every version Debian's index
    offers of some packages through `apt-get download`, unpacked with `dpkg-deb -x`.
    debian-closures: closures of python3, perl, gcc, git, postgresql, nginx, curl and vim
    from the package index (nothing installed), for `storelab layers`.
    Prints the trees (or the closures' folder), one a line.

    \b
    Example: for t in $(storelab datasets fetch pypi-series rich 13.7.0 13.7.1); do storelab ingest-dir $t -o study/; done
    """
    from storelab.datasets import fetch_corpus
    from storelab.ingest.progress import CountProgress, wants_progress

    with CountProgress(f"fetch {name}", wants_progress(False), None, "files") as bar:
        paths = fetch_corpus(name, to or f"build/datasets/{name}", args or (), lambda label, total: bar.advance(1, label, total))
    for path in paths:
        print(path)


def main(argv: list[str] | None = None) -> int:
    """Entry point: one-line errors, exit codes 0 ok, 1 failed, 2 usage, 130 interrupted."""
    debug = bool(os.environ.get("STORELAB_DEBUG"))
    try:
        code = app.main(args=argv, prog_name="storelab", standalone_mode=False)
        if isinstance(code, int):  # click hands back an Exit's code (--help, --version, exit 1)
            return code
    except click.exceptions.Exit as exit_:
        return exit_.exit_code
    except click.ClickException as usage:  # usage errors: bad option, missing argument
        usage.show()
        return usage.exit_code
    except click.Abort:
        _error_line("storelab: interrupted")
        return 130
    except ConfigError as error:
        _error_line(f"storelab: error: {error}")
        return 2
    except Interrupted as error:
        _error_line(f"storelab: {error}")
        return 130
    except StorelabError as error:
        _error_line(f"storelab: error: {error}")
        return 1
    except KeyboardInterrupt:
        _error_line("storelab: interrupted")
        return 130
    except Exception as error:  # noqa: BLE001 — the promise is: no traceback for users
        if debug:
            raise
        _error_line(f"storelab: internal error: {type(error).__name__}: {error} (set STORELAB_DEBUG=1 for the traceback)")
        return 70
    return 0


def run() -> None:
    """Console-script entry point.

    Once a command has succeeded and its output is flushed, the process ends at once: tearing
    the interpreter down (freeing every object, unloading Arrow and numpy) takes a tenth of a
    second and does nothing for the user — the command has closed its files, committed its
    snapshot and shut its pools. A failed command exits the usual way, so that what an error
    left half torn down (a worker pool's queues) is cleaned up by the interpreter.
    """
    code = main()
    if code != 0:  # a failed command may leave pools half torn down: let the interpreter finish them
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: let the interpreter report it as it would
        sys.exit(code)
    os._exit(code)


if __name__ == "__main__":
    run()
