"""The castore model against tvix/snix's own fixtures, byte for byte."""

from __future__ import annotations

from array import array

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from storelab.castore import (
    EMPTY_BLOB_DIGEST,
    Directory,
    DirectoryNode,
    FileNode,
    InvalidNodeError,
    SymlinkNode,
    blob_digest,
)
from storelab.castore import nodes as nodes_module
from storelab.castore.nodes import encode_file_entries, encode_file_entry
from tests.fixtures import CASTORE_VECTORS, DIRECTORIES, load_json

VECTORS = load_json(CASTORE_VECTORS)
BLOB_FIXTURES = {
    "EMPTY_BLOB": b"",
    'HELLOWORLD_BLOB ("Hello World!")': b"Hello World!",
    "BLOB_A (00 01)": b"\x00\x01",
    # Rust's `0..255` excludes 255: bytes 0..=254, 4096 times
    "BLOB_B ((0..255) repeated 4096x)": bytes(range(255)) * 4096,
    '"Hello World" (object_store.rs doc example, no "!")': b"Hello World",
    "single byte 0x01 (store-go export_test.go)": b"\x01",
}


@pytest.mark.parametrize("name", sorted(VECTORS["blobs_blake3"]))
def test_blob_digests_match_tvix(name: str) -> None:
    data = BLOB_FIXTURES[name]
    expected = VECTORS["blobs_blake3"][name]
    assert len(data) == expected["len"]
    assert blob_digest(data).hex() == expected["blake3"]


@pytest.mark.parametrize("name", sorted(VECTORS["directories"]))
def test_directories_match_snix(name: str) -> None:
    expected = VECTORS["directories"][name]
    directory = DIRECTORIES[name]
    assert directory.encoded.hex() == expected["encoded_hex"]
    assert directory.digest.hex() == expected["blake3"]
    assert directory.size == expected["size"]
    assert blake3.blake3(bytes.fromhex(expected["encoded_hex"])).hexdigest() == expected["blake3"]


@pytest.mark.parametrize("name", sorted(VECTORS["directories"]))
def test_directory_decodes_snix_bytes(name: str) -> None:
    encoded = bytes.fromhex(VECTORS["directories"][name]["encoded_hex"])
    assert Directory.decode(encoded) == DIRECTORIES[name]


def test_empty_directory_digest_is_the_empty_blob_digest() -> None:
    assert Directory().digest == EMPTY_BLOB_DIGEST


@pytest.mark.parametrize("bad", [b"", b".", b"..", b"a/b", b"a\x00b", b"x" * 256])
def test_invalid_names_rejected(bad: bytes) -> None:
    with pytest.raises(InvalidNodeError, match="invalid name"):
        Directory.from_nodes([FileNode(bad, EMPTY_BLOB_DIGEST, 0)])


def test_name_of_255_bytes_accepted() -> None:
    Directory.from_nodes([FileNode(b"x" * 255, EMPTY_BLOB_DIGEST, 0)])


@pytest.mark.parametrize("target", [b"", b"a\x00b", b"t" * 4096])
def test_invalid_symlink_targets_rejected(target: bytes) -> None:
    with pytest.raises(InvalidNodeError, match="invalid symlink target"):
        SymlinkNode(b"link", target)


def test_duplicate_names_across_lists_rejected() -> None:
    with pytest.raises(InvalidNodeError, match="more than one list"):
        Directory((DirectoryNode(b"a", EMPTY_BLOB_DIGEST, 0),), (FileNode(b"a", EMPTY_BLOB_DIGEST, 0),))


def test_unsorted_lists_rejected() -> None:
    files = (FileNode(b"b", EMPTY_BLOB_DIGEST, 0), FileNode(b"a", EMPTY_BLOB_DIGEST, 0))
    with pytest.raises(InvalidNodeError, match="not sorted"):
        Directory(files=files)


def test_digest_must_be_32_bytes() -> None:
    with pytest.raises(InvalidNodeError, match="not 32"):
        FileNode(b"a", b"\x00" * 31, 0)


def test_size_counts_every_entry_twice_as_snix_does() -> None:
    inner = Directory.from_nodes([FileNode(b"f", EMPTY_BLOB_DIGEST, 0), SymlinkNode(b"l", b"t")])
    outer = Directory.from_nodes([inner.node(b"d"), FileNode(b"g", EMPTY_BLOB_DIGEST, 0)])
    assert inner.size == 4
    assert outer.size == 2 * 2 + 4


def test_non_canonical_bytes_rejected() -> None:
    # the same file entry, but with an explicit executable=false field (default values are omitted)
    node = FileNode(b"a", EMPTY_BLOB_DIGEST, 1).encode() + b"\x20\x00"
    data = b"\x12" + bytes([len(node)]) + node
    with pytest.raises(InvalidNodeError, match="canonical"):
        Directory.decode(data)


names = st.binary(min_size=1, max_size=12).filter(lambda n: b"/" not in n and b"\0" not in n and n not in (b".", b".."))
digests = st.binary(min_size=32, max_size=32)
node_strategy = st.one_of(
    st.builds(FileNode, names, digests, st.integers(0, 2**40), st.booleans()),
    st.builds(DirectoryNode, names, digests, st.integers(0, 2**40)),
    st.builds(SymlinkNode, names, st.binary(min_size=1, max_size=40).filter(lambda t: b"\0" not in t)),
)


@given(st.lists(node_strategy, max_size=12, unique_by=lambda n: n.name))
def test_encode_decode_round_trip(nodes: list) -> None:
    directory = Directory.from_nodes(nodes)
    assert Directory.decode(directory.encoded) == directory
    assert directory.digest == blake3.blake3(directory.encoded).digest()


@given(st.binary(max_size=200))
def test_decode_arbitrary_bytes_is_valid_or_invalid_node_error(data: bytes) -> None:
    try:
        directory = Directory.decode(data)
    except InvalidNodeError:
        return
    assert directory.encoded == data


# The batch encoder of file entries (storelab/castore/_encode.c) -------------------------------


def test_the_compiled_encoder_is_built() -> None:
    """`make test` installs storelab with its extensions: a suite that silently ran the
    Python road would test less than it says."""
    assert nodes_module._encode is not None


@given(
    files=st.lists(
        st.tuples(st.binary(min_size=1, max_size=255), st.binary(min_size=32, max_size=32), st.integers(0, 2**64 - 1), st.booleans()),
        max_size=20,
    )
)
def test_the_batch_encoder_writes_what_encode_file_entry_writes(files: list[tuple[bytes, bytes, int, bool]]) -> None:
    names = [name for name, _, _, _ in files]
    digests = b"".join(digest for _, digest, _, _ in files)
    sizes = array("Q", [size for _, _, size, _ in files])
    executables = [executable for _, _, _, executable in files]
    expected = [encode_file_entry(*file) for file in files]
    assert encode_file_entries(names, digests, sizes, executables) == expected
    assert nodes_module._encode.file_entries(names, digests, list(sizes), executables) == expected


def test_the_batch_encoder_refuses_what_does_not_add_up() -> None:
    with pytest.raises(ValueError, match="32 bytes of digest per name"):
        nodes_module._encode.file_entries([b"a"], bytes(31), [1], [False])
    with pytest.raises(ValueError, match="one size"):
        nodes_module._encode.file_entries([b"a"], bytes(32), [], [False])
    with pytest.raises(OverflowError):
        nodes_module._encode.file_entries([b"a"], bytes(32), [2**64], [False])
    with pytest.raises(TypeError, match="bytes"):
        nodes_module._encode.file_entries(["a"], bytes(32), [1], [False])
