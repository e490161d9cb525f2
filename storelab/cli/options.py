"""Options several commands share, and turning their text into the library's values.

Each parsing helper raises :class:`~storelab.errors.ConfigError` (exit 2) naming the option.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from storelab.cli.base import option, options
from storelab.errors import ConfigError, StorelabError
from storelab.units import parse_size

if TYPE_CHECKING:
    from storelab.chunking import ChunkerSpec
    from storelab.ingest import IngestOptions
    from storelab.stores.base import BlobStore
    from storelab.stores.uploader import UploadOptions

__all__ = [
    "NAR_COMPRESSION_OPTION",
    "NORMALIZE_OPTION",
    "SCHEDULER_OPTION",
    "ZSTD_OPTION",
    "chunker_spec",
    "chunking_options",
    "csv_values",
    "nar_codecs",
    "rewrite_for",
    "store_options",
    "MODELS_OPTION",
    "price_options",
    "store_target",
    "stream_specs",
    "with_models",
    "upload_options",
]

ZSTD_OPTION = option(
    "--zstd-level", type=click.IntRange(0, 22), default=3, panel="Chunking",
    help="zstd level for measuring each distinct chunk's compressed size (snix stores level 3); 0 = don't measure.",
)  # fmt: skip
chunking_options = options(
    option("--chunker", default="fastcdc2020", panel="Chunking",
           help="fastcdc2020 (snix), fastcdc2016 (attic's algorithm; 'attic' for attic's own sizes), fixed, or a peer's exact "
           "chunker: casync (also 'desync'), restic, borg, ncps, xet, zstd-chunked. `storelab chunkers` lists them with their parameters."),
    option("--chunker-params", default=None, metavar="KEY=VALUE,…", panel="Chunking",
           help="The chunker's own parameters over its tool's defaults, e.g. borg: min_exp=10,max_exp=16,mask_bits=12,window=4095; "
           "restic: pol=0x… (a repository's, from `restic cat config`); casync: min=16KiB,avg=64KiB,max=256KiB."),
    option("--avg-chunk-size", default=None, panel="Chunking",
           help="Average chunk size (fixed: the block size), e.g. 64KiB; the other sizes follow in the tool's own ratios "
           "(snix: min avg/2, max 2·avg). Default: the chunker's own (fastcdc2020: 256KiB)."),
    option("--min-chunk-size", default=None, panel="Chunking", help="Smallest chunk (chunkers with a min parameter)."),
    option("--max-chunk-size", default=None, panel="Chunking", help="Largest chunk (chunkers with a max parameter)."),
    option("--normalization", type=click.IntRange(0, 8), default=None, panel="Chunking",
           help="FastCDC normalisation level: fastcdc2020 0–3 (default 1), ncps 0–8 (default 2)."),
    option("--seed", type=click.IntRange(0, (1 << 64) - 1), default=None, panel="Chunking",
           help="Gear/buzhash table seed (fastcdc2020 as fastcdc-rs with_level_and_seed, borg's chunk seed, ncps); 0 = unseeded."),
    option("--stream-chunking", "stream_chunking", multiple=True, metavar="CHUNKER[/K=V,…]@SCOPE", panel="Chunking",
           help="Also cut one stream per snapshot, whole (repeatable): @nar its NAR, as attic (attic@nar), nix-casync "
           "(casync@nar) and ncps (ncps@nar) do; @files-by-name / @files-by-size its files concatenated (trees only). "
           "Recorded as chunkings of their own, ids ending in @SCOPE."),
    ZSTD_OPTION,
)  # fmt: skip
price_options = options(
    option("--put-price", type=click.FloatRange(min=0), default=0.005, panel="Cost model", help="$ per 1,000 PUT requests (S3 Standard)."),
    option("--get-price", type=click.FloatRange(min=0), default=0.0004, panel="Cost model", help="$ per 1,000 GET/HEAD requests (S3 Standard)."),
    option("--storage-price", type=click.FloatRange(min=0), default=0.023, panel="Cost model", help="$ per GiB-month stored (S3 Standard)."),
    option("--months", type=click.FloatRange(min=0), default=1.0, panel="Cost model", help="Months the objects are kept."),
)  # fmt: skip
MODELS_OPTION = option(
    "--models", default=None, metavar="NAME,…", panel="Chunking",
    help="Also record what `storelab compare` needs for these store models (all: every one): their per-file and stream "
    "chunkings and the compressed NAR sizes. Models: nix-cache-xz, nix-cache-zstd, snix, attic, nix-casync, ncps, restic, borg.",
)  # fmt: skip
THRESHOLD_OPTION = option(
    "--upload-threshold", default="1MiB", panel="Store", help="Blobs below this go up in the background; larger ones inline."
)
BUFFER_OPTION = option("--upload-buffer", default="128MiB", panel="Store", help="Most bytes held in memory waiting for upload.")
store_options = options(
    option(
        "--store", default=None, panel="Store",
        help="Also write every blob, chunk and directory to this store, laid out as snix's object store: "
        "file:///path, memory:// or s3://bucket/prefix (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID… from the environment).",
    ),
    option("--upload-concurrency", type=click.IntRange(min=0), default=32, panel="Store",
           help="Uploads in flight per process for blobs under the threshold; 0 = upload every request in turn."),
    THRESHOLD_OPTION,
    BUFFER_OPTION,
)  # fmt: skip
NAR_COMPRESSION_OPTION = option(
    "--nar-compression", default=None, panel="Chunking",
    help="Also measure the NAR as a binary cache stores it, compressed whole: zstd (zstd -3, .nar.zst), xz (xz -6, .nar.xz), "
    "both (zstd,xz) or none. Default: zstd for ingest-nar (compressed as it streams past), none for ingest-dir (a tree's NAR "
    "is read once more to measure it). xz is slow (≈ 5 MB/s).",
)  # fmt: skip
NORMALIZE_OPTION = option(
    "--normalize-store-paths", is_flag=True, panel="Chunking",
    help="What-if: replace /nix/store/<hash>- hashes in file contents by a placeholder before hashing (digests then differ from the real ones).",
)  # fmt: skip
SCHEDULER_OPTION = option(
    "--scheduler", default=None, panel="Cluster",
    help="Run on a Dask cluster: tcp://HOST:8786, or 'local' for a cluster of --workers processes here. "
    "The dataset must be a path every worker sees, or s3://; with --store, the store too.",
)  # fmt: skip


def nar_codecs(text: str | None, default: str) -> tuple[str, ...]:
    """``--nar-compression``'s codecs (``default`` when not given)."""
    from storelab.nar.compressed import parse_nar_codecs

    return parse_nar_codecs(default if text is None else text)


def rewrite_for(normalize: bool) -> Callable[[bytes], bytes] | None:
    """The content rewrite ``--normalize-store-paths`` asks for (None: none)."""
    if not normalize:
        return None
    from storelab.analysis.whatif import normalize_store_paths

    return normalize_store_paths


def upload_options(concurrency: int, threshold: str, buffer: str) -> UploadOptions:
    """The ``--upload-*`` options as :class:`~storelab.stores.uploader.UploadOptions`."""
    from storelab.stores.uploader import UploadOptions

    return UploadOptions(concurrency, parse_size(threshold), parse_size(buffer))


def chunker_spec(
    chunker: str, params: str | None = None, avg: str | None = None, min_size: str | None = None, max_size: str | None = None,
    normalization: int | None = None, seed: int | None = None,
) -> ChunkerSpec:  # fmt: skip
    """The chunking options as a checked :class:`~storelab.chunking.ChunkerSpec`: ``--chunker-params``
    over the shorthands (``--avg-chunk-size`` in the tool's ratios, then min, max, normalisation, seed)."""
    from storelab.chunking import CATALOG, PRESETS, make_chunker, make_spec, parse_params, scaled_spec, spec_from_id

    chunker, at, scope = chunker.partition("@")
    given = parse_params(params)
    family = PRESETS[chunker][0] if chunker in PRESETS else chunker
    known = CATALOG[family].parameters if family in CATALOG else ()
    shorthands: dict[str, int | str] = {}
    for flag, key, value in (
        ("--min-chunk-size", "min", min_size), ("--max-chunk-size", "max", max_size), ("--normalization", "nc", normalization), ("--seed", "seed", seed),
    ):  # fmt: skip
        if value is None or (key == "seed" and value == 0 and key not in known):
            continue
        if family in CATALOG and key not in known:
            raise ConfigError(f"{flag} does not apply to {family} (its parameters: {', '.join(known)}); give them with --chunker-params")
        shorthands[key] = value
    merged = {**shorthands, **given}
    spec = scaled_spec(chunker, parse_size(avg), merged) if avg is not None else make_spec(chunker, merged)
    if at:
        spec = spec_from_id(f"{spec.id}@{scope}")
        if spec.is_stream:
            raise ConfigError(f"--chunker {chunker}@{scope}: a stream chunking goes in --stream-chunking; --chunker cuts each file")
    make_chunker(spec)
    return spec


def stream_specs(texts: tuple[str, ...]) -> tuple[ChunkerSpec, ...]:
    """``--stream-chunking`` values as specs (each must name its scope)."""
    from storelab.chunking import make_chunker, spec_from_id

    specs = []
    for text in texts:
        if "@" not in text:
            raise ConfigError(f"--stream-chunking {text}: name what is cut: {text}@nar, {text}@files-by-name or {text}@files-by-size")
        spec = spec_from_id(text)
        make_chunker(spec)
        specs.append(spec)
    return tuple(specs)


def with_models(options: IngestOptions, models: str | None) -> IngestOptions:
    """``options`` plus what ``--models`` needs recorded (chunkings the options have already stay once)."""
    if not models:
        return options
    from dataclasses import replace

    from storelab.models import MODELS, model_chunkings

    names = list(MODELS) if models.strip() == "all" else csv_values(models, str.strip, "--models")
    unknown = [name for name in names if name not in MODELS]
    if unknown:
        raise ConfigError(f"--models: unknown store model {unknown[0]!r}; choose from {', '.join(MODELS)} (or all)")
    files, streams, codecs = model_chunkings(names)
    have = {spec.id for spec in (options.chunker, *options.also, *options.streams)}
    also = options.also + tuple(spec for spec in files if spec.id not in have)
    more_streams = options.streams + tuple(spec for spec in streams if spec.id not in have)
    codecs_all = tuple(dict.fromkeys((*options.nar_compression, *codecs)))
    return replace(options, also=also, streams=more_streams, nar_compression=codecs_all)


def store_target(url: str | None) -> str | BlobStore | None:
    """``--store``, opened now so a bad URL fails before any work (see
    `storelab.stores.snix.store_target`)."""
    if url is None:
        return None
    from storelab.stores.snix import store_target as target

    return target(url)


def csv_values(text: str, parse: Callable[[str], Any], what: str) -> list[Any]:
    """A comma-separated option's values, each parsed; at least one."""
    try:
        values = [parse(part) for part in text.split(",") if part.strip()]
    except (ValueError, StorelabError) as error:
        raise ConfigError(f"{what}: {error}") from None
    if not values:
        raise ConfigError(f"{what}: give at least one value")
    return values


as_of_option = option(
    "--as-of", "as_of", default=None, metavar="VERSION|TIME",
    help="Read the dataset as it was at this version (`storelab check` names the newest) or time (2026-12-07T10:00:00, UTC).",
)  # fmt: skip


def dataset_as_of(dataset: str, as_of: str | None) -> Any:
    """What a command's analyses read: the dataset opened once, at one version — the newest, or
    ``--as-of``'s — so every figure the command prints comes from the same snapshots
    (:class:`~storelab.tables.Dataset`)."""
    from storelab.tables import Dataset

    return Dataset.open(dataset, as_of=as_of)
