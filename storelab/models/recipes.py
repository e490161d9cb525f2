"""Store models: what each real system would store for the same snapshots, as a recipe.

A recipe is a granularity (whole NAR, each file, the NAR stream) × a chunker × a compression ×
the metadata objects the system writes, with the overheads its format adds per chunk and per
container, and the sources they were read in. :func:`~storelab.models.compare.compare_models`
turns a dataset holding the recipe's chunkings into figures.

What is not modelled, per model, is in its ``leaves_out``: encryption keys and config files,
database rows (counted only by the metadata-adjusted savings), restic's tree blobs and index
files, borg's manifest and archive metadata, compression of metadata objects.
"""

from __future__ import annotations

from dataclasses import dataclass

from storelab.chunking import ChunkerSpec, spec_from_id

__all__ = ["MODELS", "StoreModel", "model_chunkings"]

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True, slots=True)
class StoreModel:
    """One system's way of storing NARs."""

    name: str
    system: str
    """The system and the settings modelled."""
    granularity: str
    """``nar`` (one object per distinct NAR), ``file`` (per-file chunks) or ``nar-stream``
    (the NAR cut as one stream)."""
    chunker_id: str | None
    """The chunking the model reads (``None``: whole NARs)."""
    compression: str
    """``xz`` / ``zstd`` (whole NARs, as measured by ``--nar-compression``), or ``zstd per
    chunk`` (each distinct chunk at the dataset's zstd level, 3 unless chosen otherwise)."""
    metadata: str
    """The objects it writes besides data."""
    sources: tuple[str, ...]
    leaves_out: str
    per_chunk_overhead: int = 0
    """Bytes each stored chunk costs on top of its compressed bytes (headers, MACs)."""
    container_size: int = 0
    """Chunks are packed into containers of about this size (restic packs, borg segments);
    0 = one object per chunk."""
    per_container_overhead: int = 0
    whole_below: int = 0
    """NARs smaller than this are stored whole, compressed (attic's ``nar-size-threshold``)."""
    narinfo: str | None = None
    """``xz``/``zstd``: a ``.narinfo`` object per distinct NAR, naming that compression."""
    chunk_index: str | None = None
    """``snix``: blob index objects and directory closures; ``caibx``: a casync index per NAR."""


MODELS: dict[str, StoreModel] = {
    model.name: model
    for model in (
        StoreModel(
            "nix-cache-xz", "a Nix binary cache as cache.nixos.org: one .nar.xz per distinct NAR (xz -6)", "nar", None, "xz",
            "a .narinfo per NAR", ("https://nixos.org/manual/nix/stable/store/types/http-binary-cache-store",
                                    "nix src/libstore/binary-cache-store.cc (NarInfo writing)"),
            "the nix-cache-info file, .ls listings, debug info; the Deriver line (a NAR does not tell it)", narinfo="xz",
        ),
        StoreModel(
            "nix-cache-zstd", "a Nix binary cache with compression=zstd: one .nar.zst per distinct NAR (zstd -3)", "nar", None, "zstd",
            "a .narinfo per NAR", ("nix src/libstore/binary-cache-store.cc (compression=zstd)",),
            "as nix-cache-xz", narinfo="zstd",
        ),
        StoreModel(
            "snix", "snix castore: per-file blobs, fastcdc2020 256 KiB, zstd 3 per chunk", "file",
            "fastcdc2020/min=128KiB,avg=256KiB,max=512KiB,nc=1", "zstd per chunk",
            "blob index objects (chunk lists of blobs of 2+ chunks), a directory closure per tree",
            ("snix castore/src/blobservice/object_store.rs", "snix castore/src/directoryservice"),
            "PathInfo rows (in snix's database); the closure objects' own compression", chunk_index="snix",
        ),
        StoreModel(
            "attic", "attic: NAR-level dedup, the NAR stream cut by fastcdc2016 16/64/256 KiB (NARs under 64 KiB whole), zstd",
            "nar-stream", "fastcdc2016/min=16KiB,avg=64KiB,max=256KiB@nar", "zstd per chunk",
            "none as objects: NAR and chunk rows live in attic's database (narinfo generated on request)",
            ("attic server/src/config-template.toml ([chunking] defaults)", "attic server/src/api/v1/upload_path.rs"),
            "the database rows (see the metadata-adjusted savings)", whole_below=64 * KiB,
        ),
        StoreModel(
            "nix-casync", "nix-casync: the NAR stream cut by casync 16/64/256 KiB, zstd per chunk", "nar-stream",
            "casync/min=16KiB,avg=64KiB,max=256KiB@nar", "zstd per chunk", "a .caibx index per NAR (40 bytes per chunk) and a .narinfo",
            ("flokli/nix-casync (pkg/store/chunkstore, pkg/store/narinfostore)", "systemd/casync src/caformat.h (index layout)"),
            "casync's own chunk-store directory structure", chunk_index="caibx", narinfo="zstd",
        ),
        StoreModel(
            "ncps", "ncps with CDC: the decompressed NAR cut by its FastCDC 16/64/256 KiB, zstd per chunk", "nar-stream",
            "ncps/min=16KiB,avg=64KiB,max=256KiB,nc=2@nar", "zstd per chunk",
            "none as objects: narinfo, NAR and chunk rows live in ncps's database",
            ("kalbasit/ncps docs/User Guide/Features/CDC.md", "kalbasit/ncps pkg/chunker/chunker.go"),
            "the database rows (see the metadata-adjusted savings)",
        ),
        StoreModel(
            "hestia", "hestia: per file, store-path references zeroed before chunking, fastcdc2020 64/256/1024 KiB, zstd per chunk",
            "file", "fastcdc2020/min=64KiB,avg=256KiB,max=1MiB,nc=1@refs-zeroed", "zstd per chunk",
            "not modelled (its index format is not published); the metadata-adjusted savings charge m bytes per chunk reference",
            ("the issue's description of hestia: per file, fastcdc2020 64/256/1024 KiB, a forced cut every 16 MiB, references zeroed",),
            "its forced cut every 16 MiB (never reached: no chunk passes the 1 MiB maximum); the references it must store to "
            "restore the zeroed hashes",
        ),
        StoreModel(
            "restic", "restic: per file, its Rabin chunker (512 KiB–8 MiB, 1 MiB average), zstd, 16 MiB packs", "file",
            "restic/min=512KiB,max=8MiB,avg_bits=20,pol=0x3da3358b4dc173", "zstd per chunk",
            "pack headers (41 bytes per blob, encrypted: + 32 + 4 per pack); each blob encrypted (+ 32 bytes)",
            ("restic doc/design.rst (Pack format, Encryption)", "restic internal/repository/packer_manager.go (16 MiB packs)"),
            "tree blobs, index files, snapshot files, keys; restic's own compression choice per blob", per_chunk_overhead=32 + 41,
            container_size=16 * MiB, per_container_overhead=32 + 4,
        ),
        StoreModel(
            "borg", "borg 1.2: per file, buzhash 19/23/21/4095, compressed (zstd,3 here: borg's default lz4 compresses less), 500 MiB segments",
            "file", "borg/min_exp=19,max_exp=23,mask_bits=21,window=4095,seed=0", "zstd per chunk",
            "a 41-byte entry header per object in the segment files, 2 bytes of compression header, 1 byte of key type",
            ("borg docs/internals/data-structures.rst (segments, PUT entries)", "borg src/borg/compress.pyx (headers)"),
            "the manifest, archive metadata chunks, the repository index and hints", per_chunk_overhead=41 + 2 + 1,
            container_size=500 * MiB, per_container_overhead=8,
        ),
    )
}
"""Every model by name (``storelab compare --models``)."""


def model_chunkings(names: list[str]) -> tuple[list[ChunkerSpec], list[ChunkerSpec], tuple[str, ...]]:
    """What an ingest must record for ``names``: per-file chunkings, stream chunkings, NAR
    compressions (``ingest-* --models``).

    >>> files, streams, codecs = model_chunkings(["snix", "attic", "nix-cache-xz"])
    >>> [s.id for s in files], [s.id for s in streams], codecs
    (['fastcdc2020/min=128KiB,avg=256KiB,max=512KiB,nc=1'], ['fastcdc2016/min=16KiB,avg=64KiB,max=256KiB@nar'], ('zstd', 'xz'))
    """
    files: list[ChunkerSpec] = []
    streams: list[ChunkerSpec] = []
    codecs = {"zstd"}  # attic stores small NARs whole, and every model's baseline is measured
    for name in names:
        model = MODELS[name]
        if model.chunker_id is not None:
            spec = spec_from_id(model.chunker_id)
            (streams if spec.is_stream else files).append(spec)
        if model.granularity == "nar":
            codecs.add(model.compression)
    return _unique(files), _unique(streams), tuple(sorted(codecs, key=["zstd", "xz"].index))


def _unique(specs: list[ChunkerSpec]) -> list[ChunkerSpec]:
    return list({spec.id: spec for spec in specs}.values())

