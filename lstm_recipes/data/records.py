"""Binary shard formats: Parquet (by row group, with ``pyarrow``) and TFRecord files of
``tf.train.Example``, read as rows of text fields like ``shards``' text formats."""

from __future__ import annotations

from pathlib import Path

from lstm_recipes.data import reading
from lstm_recipes.data.rows import BATCH_ROWS, Fields, header_columns, text_value
from lstm_recipes.errors import UserError


def parquet_rows(path: Path, fields: Fields, report: reading.Report, sep: str = " "):
    """(row number, field values) of a Parquet file, one row group in memory at a time.

    Args:
        path: the file.
        fields: the columns to read.
        report: where bad rows go.
        sep: what joins the items of a list column.
    """
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError(
            f"reading {path} needs pyarrow: pip install 'lstm-recipes[parquet]' (or pyarrow)"
        ) from None
    try:
        parquet = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises its own ArrowInvalid, OSError, ...
        raise UserError(f"expected a Parquet file at {path}, found: {e}") from None
    found = parquet.schema_arrow.names
    header_columns(path, list(fields.names), found)
    row = 0
    try:
        # One row group at a time: memory is bounded by the largest row group.
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group, columns=list(fields.names))
            columns = [table.column(n).to_pylist() for n in fields.names]
            for values in zip(*columns):
                row += 1
                if any(v is None for v in values):
                    report.bad_row(f"{path}: row {row:,}", "expected a value, found null")
                    continue
                yield row, [text_value(v, sep) for v in values]
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"{path}: cannot read past row {row:,}: {e}") from None


def tfrecord_rows(path: Path, fields: Fields, report: reading.Report, sep: str = " "):
    """(record number, feature values as text) of a TFRecord file of ``tf.train.Example``.

    Args:
        path: the file (``.gz``: GZIP records).
        fields: the features to read.
        report: where bad records go.
        sep: what joins the values of a feature with several.
    """
    import tensorflow as tf

    compression = "GZIP" if path.name.lower().endswith(".gz") else ""
    records = tf.data.TFRecordDataset(str(path), compression_type=compression)
    row = 0
    try:
        for batch in records.batch(BATCH_ROWS).as_numpy_iterator():
            for serialized in batch:
                row += 1
                try:
                    example = tf.train.Example.FromString(serialized)
                except Exception:
                    report.bad_row(f"{path}: record {row:,}", "expected a tf.train.Example")
                    continue
                values = [_feature_text(example, n, sep) for n in fields.names]
                missing = [n for n, v in zip(fields.names, values) if v is None]
                if missing:
                    found = ", ".join(sorted(example.features.feature)) or "none"
                    report.bad_row(
                        f"{path}: record {row:,}",
                        f"expected features {', '.join(fields.names)}; missing "
                        f"{', '.join(missing)} (found {found}; choose others with --set)",
                    )
                    continue
                yield row, values
    except tf.errors.OpError as e:
        raise UserError(f"{path}: cannot read past record {row:,}: {e.message}") from None


def _feature_text(example, name: str, sep: str) -> str | None:
    feature = example.features.feature.get(name)
    if feature is None:
        return None
    kind = feature.WhichOneof("kind")
    if kind is None:
        return None
    values = list(getattr(feature, kind).value)
    if kind == "bytes_list":
        values = [v.decode("utf-8", errors="replace") for v in values]
    return sep.join(map(str, values)) if len(values) != 1 else str(values[0])
