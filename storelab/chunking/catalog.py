"""Every chunker storelab has, what it is, how it is named and checked: one entry per chunker.

A chunker is chosen by name and parameters (``--chunker casync --chunker-params avg=128KiB``,
or :func:`make_spec` from Python); a parameter not given takes its tool's own default. The
entry also records the hash the tool names chunks by: storelab keys its tables by BLAKE3
whatever the chunker (dedup of identical bytes does not depend on the hash), but the object ids
a user of that tool sees do.

>>> make_spec("casync", {"avg": "128KiB"}).id
'casync/min=32KiB,avg=128KiB,max=512KiB'
>>> make_spec("attic").id
'fastcdc2016/min=16KiB,avg=64KiB,max=256KiB'
>>> parse_params("min_exp=10,max_exp=16,mask_bits=12")
{'min_exp': '10', 'max_exp': '16', 'mask_bits': '12'}
>>> spec_from_id("borg/min_exp=19,max_exp=23,mask_bits=21,window=4095,seed=0") == make_spec("borg")
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from storelab.chunking.base import HEX_PARAMS, SCOPES, SIZE_PARAMS, Chunker, ChunkerSpec
from storelab.chunking.borg import BORG_DEFAULTS, BorgChunker, borg_scaled, borg_spec
from storelab.chunking.casync import CASYNC_DEFAULTS, CasyncChunker, casync_scaled, casync_spec
from storelab.chunking.fastcdc2016 import FastCDC2016
from storelab.chunking.fastcdc2020 import FastCDC2020
from storelab.chunking.fixed import FixedSize
from storelab.chunking.ncps import NCPS_DEFAULTS, NcpsChunker, ncps_scaled, ncps_spec
from storelab.chunking.restic import RESTIC_DEFAULTS, ResticChunker, restic_scaled, restic_spec
from storelab.chunking.xet import XET_DEFAULTS, XetChunker, xet_scaled, xet_spec
from storelab.chunking.zstd_chunked import ZSTD_CHUNKED_DEFAULTS, ZstdChunkedChunker, zstd_chunked_scaled, zstd_chunked_spec
from storelab.errors import ConfigError
from storelab.units import parse_size

__all__ = ["CATALOG", "PRESETS", "ChunkerInfo", "default_spec", "make_chunker", "make_spec", "parse_params", "scaled_spec", "spec_from_id"]

DEFAULT_AVG_SIZE = 256 * 1024
"""snix's average chunk size."""


def default_spec(
    name: str = "fastcdc2020",
    avg_size: int = DEFAULT_AVG_SIZE,
    min_size: int | None = None,
    max_size: int | None = None,
    normalization: int = 1,
    seed: int = 0,
) -> ChunkerSpec:
    """A ``fastcdc2020``, ``fastcdc2016`` or ``fixed`` spec with snix's rule for what is not
    given: min = avg/2, max = 2·avg. (Any chunker: :func:`make_spec`.)

    >>> default_spec().id
    'fastcdc2020/min=128KiB,avg=256KiB,max=512KiB,nc=1'
    """
    if name not in ("fastcdc2020", "fastcdc2016", "fixed"):
        raise ConfigError(f"default_spec makes fastcdc2020, fastcdc2016 and fixed specs; for {name!r} use make_spec")
    if seed and name != "fastcdc2020":
        raise ConfigError(f"a seed is a fastcdc2020 parameter; {name} has none")
    if not 0 <= seed < 1 << 64:
        raise ConfigError(f"the seed is a 64-bit unsigned integer (got {seed})")
    if name == "fixed":
        return ChunkerSpec(name, avg_size, avg_size, avg_size, 0)
    min_size = avg_size // 2 if min_size is None else min_size
    max_size = avg_size * 2 if max_size is None else max_size
    if not min_size <= avg_size <= max_size:
        raise ConfigError(f"chunk sizes must satisfy min ≤ avg ≤ max (got {min_size}, {avg_size}, {max_size})")
    return ChunkerSpec(name, min_size, avg_size, max_size, normalization if name == "fastcdc2020" else 0, seed)


def _fastcdc2020_spec(params: Mapping[str, int]) -> ChunkerSpec:
    avg = params.get("avg", DEFAULT_AVG_SIZE)
    return default_spec("fastcdc2020", avg, params.get("min"), params.get("max"), params.get("nc", 1), params.get("seed", 0))


def _fastcdc2016_spec(params: Mapping[str, int]) -> ChunkerSpec:
    return default_spec("fastcdc2016", params.get("avg", DEFAULT_AVG_SIZE), params.get("min"), params.get("max"))


def _fixed_spec(params: Mapping[str, int]) -> ChunkerSpec:
    return default_spec("fixed", params.get("size", DEFAULT_AVG_SIZE))


@dataclass(frozen=True, slots=True)
class ChunkerInfo:
    """One chunker: its tool, defaults, identity hash, sources and how storelab proves it exact."""

    name: str
    tool: str
    """The system that chunks this way."""
    defaults: tuple[tuple[str, int], ...]
    """Its parameters and their defaults (the tool's own), in id order."""
    identity_hash: str
    """The hash the tool names a chunk by."""
    source: str
    """Where the rule was read."""
    proven: str
    """How the test suite shows storelab cuts exactly where the tool does."""
    spec: Callable[[Mapping[str, int]], ChunkerSpec]
    """Parameters (defaults filled in) → a checked spec."""
    scaled: Callable[[int], dict[str, int]]
    """An average size → the parameters for it, in the tool's ratios (``--avg-chunk-size``, ``sweep``)."""
    factory: Callable[[ChunkerSpec], Chunker]

    @property
    def parameters(self) -> tuple[str, ...]:
        return tuple(key for key, _ in self.defaults)


def _entries() -> dict[str, ChunkerInfo]:
    kib = 1024
    entries = (
        ChunkerInfo(
            "fastcdc2020", "snix (castore blobs), via fastcdc-rs v2020",
            (("min", 128 * kib), ("avg", 256 * kib), ("max", 512 * kib), ("nc", 1), ("seed", 0)), "BLAKE3",
            "fastcdc-rs src/v2020 (pyfastcdc)", "fastcdc-rs's own test vectors on SekienAkashita.jpg, gear hashes included",
            _fastcdc2020_spec, lambda avg: {"avg": avg}, FastCDC2020,
        ),
        ChunkerInfo(
            "fastcdc2016", "attic (whole NAR streams), the 2016 paper's FastCDC",
            (("min", 128 * kib), ("avg", 256 * kib), ("max", 512 * kib)), "SHA-256 (attic)",
            "fastcdc-rs src/ronomon, the `fastcdc` package", "the `fastcdc` package's Cython build, which is the reference",
            _fastcdc2016_spec, lambda avg: {"avg": avg}, FastCDC2016,
        ),
        ChunkerInfo(
            "fixed", "fixed-size blocks (the baseline)", (("size", 256 * kib),), "BLAKE3 (storelab's)", "—", "sizes only",
            _fixed_spec, lambda avg: {"size": avg}, FixedSize,
        ),
        ChunkerInfo(
            "casync", "casync 2 and desync (catar/blob streams)", tuple(CASYNC_DEFAULTS.items()), "SHA-512/256",
            "systemd/casync src/cachunker.c", "`casync make` .caibx chunk ends at several sizes, on random, edited and real files",
            casync_spec, casync_scaled, CasyncChunker,
        ),
        ChunkerInfo(
            "restic", "restic 0.14+ (per file)", tuple(RESTIC_DEFAULTS.items()), "SHA-256",
            "restic/chunker chunker.go (v0.4)", "`restic backup` blob ids (SHA-256 of our chunks), with the repository's polynomial",
            restic_spec, restic_scaled, ResticChunker,
        ),
        ChunkerInfo(
            "borg", "borg 1.x (per file, buzhash)", tuple(BORG_DEFAULTS.items()),
            "SHA-256 (-e none); HMAC-SHA256 / keyed BLAKE2b with a key",
            "borgbackup/borg 1.2.4 src/borg/_chunker.c", "borg's own borg.chunker and `borg create` (debug dump-archive), several parameter sets",
            borg_spec, borg_scaled, BorgChunker,
        ),
        ChunkerInfo(
            "ncps", "ncps (decompressed NAR streams), kalbasit/fastcdc", tuple(NCPS_DEFAULTS.items()), "BLAKE3",
            "kalbasit/fastcdc v1.0.0 core.go, options.go; kalbasit/ncps pkg/chunker",
            "a line-by-line Python port of core.go (no binary or vectors to test against)",
            ncps_spec, ncps_scaled, NcpsChunker,
        ),
        ChunkerInfo(
            "xet", "Hugging Face Xet (hf_xet, per file)", tuple(XET_DEFAULTS.items()), "BLAKE3 keyed with Xet's DATA_KEY",
            "huggingface/xet-core xet_data/src/deduplication/chunking.rs, gearhash crate table",
            "hf_xet.hash_files file hashes (cut points + Xet's Merkle hashing)",
            xet_spec, xet_scaled, XetChunker,
        ),
        ChunkerInfo(
            "zstd-chunked", "zstd:chunked OCI layers (containers/storage, per file)", tuple(ZSTD_CHUNKED_DEFAULTS.items()), "SHA-256",
            "containers/storage pkg/chunked/compressor rollsum.go, compressor.go",
            "a line-by-line Python port of the Go reader (no binary or vectors to test against)",
            zstd_chunked_spec, zstd_chunked_scaled, ZstdChunkedChunker,
        ),
    )  # fmt: skip
    return {info.name: info for info in entries}


CATALOG: dict[str, ChunkerInfo] = _entries()
"""Every chunker by name."""
PRESETS: dict[str, tuple[str, dict[str, int]]] = {
    "snix": ("fastcdc2020", {}),
    "attic": ("fastcdc2016", {"min": 16 * 1024, "avg": 64 * 1024, "max": 256 * 1024}),
    "desync": ("casync", {}),
}
"""Other names for a chunker with a tool's own settings: attic's server defaults (its
``[chunking]`` section: min 16 KiB, avg 64 KiB, max 256 KiB); desync cuts as casync."""


def _names() -> str:
    return ", ".join([*CATALOG, *PRESETS])


def _resolve(name: str) -> tuple[ChunkerInfo, dict[str, int]]:
    if name in PRESETS:
        family, preset = PRESETS[name]
        return CATALOG[family], dict(preset)
    try:
        return CATALOG[name], {}
    except KeyError:
        raise ConfigError(f"unknown chunker {name!r}; choose one of {_names()}") from None


def _value(key: str, value: int | str) -> int:
    if isinstance(value, int):
        return value
    text = value.strip()
    if key in SIZE_PARAMS:
        try:
            return parse_size(text)
        except (ValueError, ConfigError):
            raise ConfigError(f"chunker parameter {key}: not a byte size: {value!r} (try 4096, 64KiB, 1MiB)") from None
    try:
        return int(text, 16) if key in HEX_PARAMS or text.lower().startswith("0x") else int(text)
    except ValueError:
        raise ConfigError(f"chunker parameter {key}: not a number: {value!r}") from None


def make_spec(name: str, params: Mapping[str, int | str] | None = None) -> ChunkerSpec:
    """The spec for chunker (or preset) ``name`` with ``params`` over its tool's defaults.

    Values may be text (``"64KiB"``, ``"0x3DA3358B4DC173"``); unknown keys are a
    :class:`ConfigError` naming the chunker's parameters.
    """
    info, merged = _resolve(name)
    for key, value in (params or {}).items():
        if key not in info.parameters:
            raise ConfigError(f"{info.name} has no parameter {key!r}; its parameters: {', '.join(info.parameters)}")
        merged[key] = _value(key, value)
    return info.spec(merged)


def scaled_spec(name: str, avg: int, params: Mapping[str, int | str] | None = None) -> ChunkerSpec:
    """The spec for ``name`` at average ``avg`` (its other sizes in the tool's ratios), then ``params``.

    >>> scaled_spec("borg", 64 * 1024).id
    'borg/min_exp=14,max_exp=18,mask_bits=16,window=4095,seed=0'
    >>> scaled_spec("casync@nar", 64 * 1024).id
    'casync/min=16KiB,avg=64KiB,max=256KiB@nar'
    """
    base, at, scope = name.partition("@")
    info, _ = _resolve(base)
    spec = make_spec(base, {**info.scaled(avg), **(params or {})})
    return spec_from_id(f"{spec.id}@{scope}") if at else spec


def parse_params(text: str | None) -> dict[str, str]:
    """``key=value[,key=value…]`` (``--chunker-params``) as a dict of texts."""
    params: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"chunker parameters are key=value[,key=value…]; got {part.strip()!r}")
        params[key.strip()] = value.strip()
    return params


def spec_from_id(chunker_id: str) -> ChunkerSpec:
    """The spec a ``chunker_id`` (as the tables record it) names; parameters left out take
    their defaults, and ``@scope`` makes a stream chunking (see :data:`~storelab.chunking.base.SCOPES`).

    >>> spec_from_id("fastcdc2020/min=4KiB,avg=16KiB,max=65535,nc=1,seed=666").seed
    666
    >>> spec_from_id("fixed/size=64KiB").avg_size
    65536
    >>> spec_from_id("attic@nar").id
    'fastcdc2016/min=16KiB,avg=64KiB,max=256KiB@nar'
    """
    text, at, scope = chunker_id.partition("@")
    name, _, params = text.partition("/")
    spec = make_spec(name.strip(), parse_params(params))
    if not at:
        return spec
    if scope not in SCOPES:
        raise ConfigError(f"{chunker_id!r}: unknown scope {scope!r}; choose one of {', '.join(SCOPES)}")
    return replace(spec, scope=scope)


def make_chunker(spec: ChunkerSpec) -> Chunker:
    """Build the chunker a spec names; raises :class:`ConfigError` for parameters it cannot use."""
    info, _ = _resolve(spec.name)
    chunker = info.factory(replace(spec, scope="file"))
    chunker.spec = spec  # the chunker cuts the same whatever it is given to cut
    return chunker
