"""The table layer: Arrow columns built from buffers equal pyarrow's own conversion."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from storelab.tables import SCHEMAS
from storelab.tables.arrow import column

FIELD_TYPES = sorted({str(f.type): f.type for schema in SCHEMAS.values() for f in schema}.items())


def values_for(type_: pa.DataType) -> st.SearchStrategy:
    if pa.types.is_dictionary(type_) or pa.types.is_string(type_):
        return st.one_of(st.none(), st.sampled_from(["file", "directory", "symlink", "é"]))
    if pa.types.is_fixed_size_binary(type_):
        return st.one_of(st.none(), st.binary(min_size=type_.byte_width, max_size=type_.byte_width))
    if pa.types.is_binary(type_):
        return st.one_of(st.none(), st.binary(max_size=20))
    if pa.types.is_boolean(type_):
        return st.one_of(st.none(), st.booleans())
    if pa.types.is_integer(type_):
        info = (-(2 ** (type_.bit_width - 1)), 2 ** (type_.bit_width - 1) - 1) if pa.types.is_signed_integer(type_) else (0, 2**type_.bit_width - 1)
        return st.one_of(st.none(), st.integers(*info))
    if pa.types.is_floating(type_):
        return st.one_of(st.none(), st.floats(allow_nan=False))
    if pa.types.is_timestamp(type_):
        return st.one_of(st.none(), st.datetimes(min_value=datetime(1971, 1, 1), timezones=st.just(UTC)))
    if pa.types.is_list(type_):
        item = type_.value_type
        if pa.types.is_struct(item):
            return st.one_of(st.none(), st.lists(st.fixed_dictionaries({f.name: values_for(f.type) for f in item}), max_size=3))
        return st.one_of(st.none(), st.lists(values_for(item), max_size=3))
    raise AssertionError(type_)


@pytest.mark.parametrize("name, type_", FIELD_TYPES, ids=[n for n, _ in FIELD_TYPES])
@given(data=st.data())
def test_column_equals_pyarrow_conversion(name: str, type_: pa.DataType, data: st.DataObject) -> None:
    values = data.draw(st.lists(values_for(type_), max_size=40))
    built = column(values, type_)
    assert built.type == type_
    built.validate(full=True)
    assert built.to_pylist() == pa.array(values, type=type_).to_pylist()


def test_fixed_binary_of_wrong_width_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        column([b"short"], pa.binary(32))


@pytest.mark.parametrize(
    ("value", "type_"),
    [("20261129T154137-1a2b3c4d", pa.string()), (b"\x00\xffpath", pa.binary()), ("", pa.string()), (None, pa.string())],
)
def test_constant_columns_hold_the_value_in_every_row(value, type_) -> None:
    from storelab.tables.rows import _constant

    for n in (0, 1, 5):
        column = _constant(value, type_, n)
        column.validate(full=True)
        assert column.type == type_ and column.to_pylist() == [value] * n


def test_only_names_and_ids_are_dictionary_encoded(tmp_path) -> None:
    """Staged table files write paths and digests plain (a dictionary on them is tried and
    abandoned at a cost); snapshot ids and kinds, which repeat, keep their dictionary."""
    import pyarrow.parquet as pq

    from storelab.tables.rows import TableBuffer

    buffer = TableBuffer("nodes", tmp_path / "nodes.parquet")
    for i in range(50):
        buffer.append({"snapshot_id": "s1", "path": f"f{i}".encode(), "kind": "file", "size": 10, "digest": bytes([i]) * 32})
    buffer.close()
    metadata = pq.ParquetFile(tmp_path / "nodes.parquet").metadata
    encodings = {metadata.schema.column(i).name: metadata.row_group(0).column(i).encodings for i in range(metadata.num_columns)}
    dictionary = {"PLAIN_DICTIONARY", "RLE_DICTIONARY"}
    assert dictionary & set(encodings["snapshot_id"]) and dictionary & set(encodings["kind"])
    assert not dictionary & set(encodings["path"]) and not dictionary & set(encodings["digest"])


def test_every_column_is_documented_beside_its_schema() -> None:
    """The docs' table reference is generated from COLUMN_DOCS: no column may lack a meaning,
    and no meaning may outlive its column."""
    from storelab.tables.schema import COLUMN_DOCS, SCHEMAS, TABLE_DOCS

    assert set(COLUMN_DOCS) == set(SCHEMAS) == set(TABLE_DOCS)
    for table, schema in SCHEMAS.items():
        assert list(COLUMN_DOCS[table]) == schema.names, table
        assert all(meaning.strip() for meaning in COLUMN_DOCS[table].values()), table
