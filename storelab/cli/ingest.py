"""``storelab ingest-dir``, ``ingest-nar``, ``sweep`` and ``what-if``: sources into snapshots.

The library loads inside each command, after its options are checked: an ingest's scan (and
its worker processes, started first) overlap those imports."""

from __future__ import annotations

import os
import time
from typing import Any

import click

from storelab.cli.base import JSON, SectionedCommand, option
from storelab.cli.options import (
    MODELS_OPTION,
    NAR_COMPRESSION_OPTION,
    NORMALIZE_OPTION,
    SCHEDULER_OPTION,
    ZSTD_OPTION,
    chunker_spec,
    chunking_options,
    csv_values,
    nar_codecs,
    rewrite_for,
    store_options,
    store_target,
    stream_specs,
    upload_options,
    with_models,
)
from storelab.cli.output import (
    emit,
    escape,
    fmt_pct,
    fmt_ratio,
    fmt_size,
    node_json,
    out,
    print_json,
)
from storelab.errors import ConfigError, InputError
from storelab.units import format_bytes, parse_size


@click.command("ingest-dir", cls=SectionedCommand)
@click.argument("path", metavar="PATH", help="Directory tree (or single file) to ingest.")
@option("--out", "-o", "out_", required=True, help="Dataset folder or s3://bucket/prefix; created if missing, appended to if not.")
@option("--label", "-l", default=None, help="Snapshot label; default: the folder's name.")
@chunking_options
@option("--workers", "-j", type=click.IntRange(min=0), default=None, help="Worker processes; default one per core; 0 = none.")
@option("--strict", is_flag=True, help="Fail on an unreadable or special file instead of skipping it.")
@option("--follow-root", is_flag=True,
         help="PATH is a symlink: ingest what it points to (default: a symlink node, as nix-store --dump writes it).")
@store_options
@NAR_COMPRESSION_OPTION
@MODELS_OPTION
@NORMALIZE_OPTION
@SCHEDULER_OPTION
@option("--quiet", "-q", is_flag=True, help="No progress bar, no summary line.")
@option("--json", JSON, is_flag=True, help="Print the new snapshot's summary as JSON.")
def ingest_dir_command(
    path: str, out_: str, label: str | None, chunker: str, chunker_params: str | None, avg_chunk_size: str | None, min_chunk_size: str | None,
    max_chunk_size: str | None, normalization: int | None, seed: int | None, stream_chunking: tuple[str, ...], zstd_level: int,
    workers: int | None, strict: bool, follow_root: bool,
    store: str | None, upload_concurrency: int, upload_threshold: str, upload_buffer: str, nar_compression: str | None,
    models: str | None, normalize_store_paths: bool, scheduler: str | None, quiet: bool, as_json: bool,
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

    spec = chunker_spec(chunker, chunker_params, avg_chunk_size, min_chunk_size, max_chunk_size, normalization, seed)
    upload = upload_options(upload_concurrency, upload_threshold, upload_buffer)
    options = IngestOptions(
        spec, zstd_level, workers, strict, wants_progress(quiet), store=store_target(store), upload=upload,
        rewrite=rewrite_for(normalize_store_paths), nar_compression=nar_codecs(nar_compression, "none"), follow_root=follow_root,
        streams=stream_specs(stream_chunking),
    )  # fmt: skip
    options = with_models(options, models)
    if scheduler is not None:
        from storelab.ingest.distributed import cluster, ingest_dir_on_cluster

        with cluster(scheduler, workers) as client:
            result = ingest_dir_on_cluster(client, path, out_, label, options, [spec])
    else:
        result = ingest_dir(path, out_, label, options)
    print_result(result, out_, quiet, as_json)


@click.command("ingest-nar", cls=SectionedCommand)
@click.argument("nars", nargs=-1, metavar="NAR...",
           help="NAR files (.nar, .nar.xz, .nar.zst, .nar.bz2), http(s):// or s3:// URLs of them, or - for standard input.")
@option("--out", "-o", "out_", required=True, help="Dataset folder or s3://bucket/prefix; created if missing, appended to if not.")
@option("--label", "-l", default=None, help="Snapshot label (one NAR only); default: the file name.")
@chunking_options
@store_options
@NAR_COMPRESSION_OPTION
@MODELS_OPTION
@NORMALIZE_OPTION
@option(
    "--from-list", default=None, panel="Sources",
    help="A file naming NARs (paths or URLs), one a line (# comments; a relative path is read from the list's folder).",
)  # fmt: skip
@option("--fetch-concurrency", type=click.IntRange(min=1), default=4, panel="Sources",
         help="URLs fetched ahead at once (each into a temporary file).")
@option("--narinfo", default=None, panel="Sources",
         help="The NAR's .narinfo: records its store path and references, checks NarSize and NarHash. For many NARs, "
         "a binary cache's folder: each NAR's narinfo is the one whose URL names its file.")
@SCHEDULER_OPTION
@option("--workers", "-j", type=click.IntRange(min=1), default=None, panel="Cluster",
         help="With --scheduler local: worker processes of the local cluster.")
@option("--quiet", "-q", is_flag=True, help="No progress bar, no summary line.")
@option("--json", JSON, is_flag=True, help="Print each new snapshot's summary as JSON.")
def ingest_nar_command(
    nars: tuple[str, ...], out_: str, label: str | None, chunker: str, chunker_params: str | None,
    avg_chunk_size: str | None, min_chunk_size: str | None, max_chunk_size: str | None, normalization: int | None, seed: int | None,
    stream_chunking: tuple[str, ...], zstd_level: int, store: str | None, upload_concurrency: int,
    upload_threshold: str, upload_buffer: str, nar_compression: str | None, models: str | None, normalize_store_paths: bool,
    from_list: str | None,
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

    sources = [*nars, *(read_source_list(from_list) if from_list else [])]
    if not sources:
        raise ConfigError("name at least one NAR (or --from-list FILE)")
    if label and len(sources) > 1:
        raise ConfigError("--label names one snapshot; give one NAR with it")
    if narinfo and scheduler:
        raise ConfigError("--narinfo is read here; leave out --scheduler")
    sources, infos, labels = narinfo_sources(sources, narinfo)
    spec = chunker_spec(chunker, chunker_params, avg_chunk_size, min_chunk_size, max_chunk_size, normalization, seed)
    upload = upload_options(upload_concurrency, upload_threshold, upload_buffer)
    many = len(sources) > 1
    options = IngestOptions(
        spec, zstd_level, 0, False, wants_progress(quiet) and not many, store=store_target(store), upload=upload,
        rewrite=rewrite_for(normalize_store_paths), nar_compression=nar_codecs(nar_compression, "zstd"),
        streams=stream_specs(stream_chunking),
    )  # fmt: skip
    options = with_models(options, models)
    if scheduler is not None:
        from storelab.ingest.distributed import cluster, ingest_nars_on_cluster

        with cluster(scheduler, workers) as client:
            ingest_nars_on_cluster(client, sources, out_, label, options, lambda r: print_result(r, out_, quiet, as_json))
        return
    if not many:
        for source, local in fetch_sources(sources, fetch_concurrency):
            result = ingest_nar(local, out_, label or labels[0], options, origin=source if is_remote(source) else None, narinfo=infos[0])
            print_result(result, out_, quiet, as_json)
        return
    from storelab.ingest.nar_source import ingest_nars
    from storelab.ingest.progress import CountProgress

    started = time.perf_counter()
    with CountProgress("ingest-nar", wants_progress(quiet), len(sources), "NARs") as bar:

        def done(result: Any) -> None:
            bar.advance(1, result.label)
            if as_json or not bar.enabled:
                print_result(result, out_, quiet, as_json)

        fetched = ((name, local, info, named) for (name, local), info, named in zip(fetch_sources(sources, fetch_concurrency), infos, labels))
        results = ingest_nars(fetched, out_, options, done)
    if bar.enabled and not as_json:
        wall = time.perf_counter() - started
        nar_bytes = sum(r.file_bytes for r in results)
        out().print(
            f"{len(results):,} NARs → {escape(out_)}: {format_bytes(nar_bytes)} of files in {wall:.1f} s "
            f"({len(results) / wall if wall else 0:.0f} NARs/s)",
            highlight=False,
        )


def narinfo_sources(sources: list[str], narinfo: str | None) -> tuple[list[str], list[Any], list[str | None]]:
    """The NARs to read, each one's narinfo and label (None: none, the file's name): a source
    that is a local ``.narinfo`` stands for the NAR its URL names, beside it (a binary cache's
    layout), labelled by its store path's name; ``--narinfo FILE`` describes the one NAR;
    ``--narinfo DIR`` a cache folder, whose narinfo naming each NAR's file is that NAR's."""
    from pathlib import Path

    from storelab.ingest.fetch import is_remote
    from storelab.nar.narinfo import load_narinfo, narinfos_by_nar

    if narinfo and not os.path.isdir(narinfo) and len(sources) > 1:
        raise ConfigError("--narinfo FILE describes one NAR; for many, give the binary cache's folder, or list the .narinfo files")
    cache = None
    nars: list[str] = []
    infos: list[Any] = []
    labels: list[str | None] = []
    for source in sources:
        labels.append(None)
        if source.endswith(".narinfo") and not is_remote(source):
            info = load_narinfo(source)
            if not info.url:
                raise InputError(f"{source}: no URL line (which NAR does it describe?)")
            nars.append(str(Path(source).parent / info.url))
            infos.append(info)
            labels[-1] = info.store_path.rsplit("/", 1)[-1].split("-", 1)[-1]  # the store path's name
        elif narinfo and os.path.isdir(narinfo):
            cache = cache if cache is not None else narinfos_by_nar(narinfo)
            name = source.rsplit("/", 1)[-1]
            if name not in cache:
                raise InputError(f"{source}: no .narinfo in {narinfo} names it (or more than one does: list the .narinfo files instead)")
            nars.append(source)
            infos.append(cache[name])
        else:
            nars.append(source)
            infos.append(load_narinfo(narinfo) if narinfo else None)
    return nars, infos, labels


def print_result(result: Any, out_dir: str, quiet: bool, as_json: bool) -> None:
    summary = {
        "snapshot_id": result.snapshot_id,
        "label": result.label,
        "root": node_json(result.root),
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
        print_json(summary)
    elif not quiet:
        out().print(
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


@click.command("sweep", cls=SectionedCommand)
@click.argument("path", metavar="PATH", help="Directory tree to chunk every way.")
@option("--out", "-o", "out_", required=True, help="Dataset folder or s3://bucket/prefix; one snapshot, every chunking of it, is added.")
@option("--chunker", default="fastcdc2020,fastcdc2016,fixed", panel="Chunking",
         help="Chunkers, comma-separated: fastcdc2020, fastcdc2016, fixed, casync, restic, borg, ncps, xet, zstd-chunked (`storelab chunkers`).")
@option("--avg-chunk-size", default="16KiB,64KiB,256KiB,1MiB", panel="Chunking",
         help="Average sizes, comma-separated; each chunker's other sizes follow in its tool's ratios (snix: min avg/2, max 2·avg).")
@option("--label", "-l", default=None, help="Snapshot label; default: the folder's name.")
@ZSTD_OPTION
@option("--workers", "-j", type=click.IntRange(min=0), default=None, help="Worker processes; default one per core; 0 = none.")
@option("--follow-root", is_flag=True, help="PATH is a symlink: sweep what it points to.")
@SCHEDULER_OPTION
@option("--quiet", "-q", is_flag=True, help="No progress bar.")
@option("--json", JSON, is_flag=True, help="Print the comparison as JSON.")
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
    from storelab.chunking import make_chunker, scaled_spec
    from storelab.ingest import IngestOptions, sweep_dir
    from storelab.ingest.progress import wants_progress

    names = csv_values(chunker, str.strip, "--chunker")
    sizes = csv_values(avg_chunk_size, parse_size, "--avg-chunk-size")
    specs = [scaled_spec(name, size) for name in names for size in sizes]
    for spec in specs:
        make_chunker(spec)  # refuse sizes a chunker cannot use before any work
    files = [spec for spec in specs if not spec.is_stream]
    if not files:
        raise ConfigError("--chunker: a sweep needs at least one per-file chunker beside its @scope ones")
    streams = tuple(spec for spec in specs if spec.is_stream)
    options = IngestOptions(zstd_level=zstd_level, workers=workers, progress=wants_progress(quiet), follow_root=follow_root, streams=streams)
    if scheduler is not None:
        from storelab.ingest.distributed import cluster, ingest_dir_on_cluster

        with cluster(scheduler, workers) as client:
            result = ingest_dir_on_cluster(client, path, out_, label, options, files)
    else:
        result = sweep_dir(path, out_, files, label, options)
    comparison = chunker_comparison(out_, [result.snapshot_id])
    emit(
        comparison, as_json, f"{path}: {len(specs)} chunkings of snapshot {result.snapshot_id} → {out_}",
        ("chunker", "avg", "stored", "objects", "mean chunk", "unique", "dedup", "compression", "savings"),
        lambda row: (
            row.chunker, fmt_size(row.avg_size), fmt_size(row.stored_bytes), f"{row.stored_objects:,}", fmt_size(row.mean_chunk),
            fmt_size(row.unique_bytes), fmt_ratio(row.dedup_ratio), fmt_ratio(row.compression_ratio), fmt_pct(row.space_savings),
        ),
    )  # fmt: skip


@click.command("what-if", cls=SectionedCommand)
@click.argument("dataset", metavar="DATASET", help="Dataset whose snapshots' sources are still on disk.")
@option("--normalize-store-paths", is_flag=True,
         help="Replace the 32-character hash of every /nix/store/<hash>- in file contents by a placeholder.")
@option("--out", "-o", "out_dir", default=None, help="Keep the normalised dataset here (default: thrown away).")
@option("--workers", "-j", type=click.IntRange(min=0), default=None, help="Worker processes; 0 = none.")
@option("--json", JSON, is_flag=True, help="Print the comparison as JSON.")
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
    emit(
        comparison, as_json, f"{dataset}: with /nix/store hashes normalised",
        ("level", "unique", "unique normalised", "stored", "stored normalised", "dedup", "dedup normalised", "saved"),
        lambda row: (
            row.level if not row.chunker_id else f"chunk [{row.chunker_id}]", fmt_size(row.unique_bytes), fmt_size(row.unique_bytes_normalized),
            fmt_size(row.stored_bytes), fmt_size(row.stored_bytes_normalized), fmt_ratio(row.dedup_ratio), fmt_ratio(row.dedup_ratio_normalized),
            f"{fmt_size(row.saved_bytes)} ({fmt_pct(row.saved_share)})",
        ),
    )  # fmt: skip
