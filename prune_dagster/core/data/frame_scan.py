"""Checks on a frame file before and after it is parsed: valid UTF-8 and no line or value longer than a limit.

`prescan` reads the file once in binary chunks, so a 2 GB field is refused after reading about
`max_bytes` of it, never parsed into memory. For the message it then names the column the limit is
crossed in, reading only that line's first `max_bytes` bytes. `check_value_lengths` repeats the limit
on the parsed values (Parquet has no lines; a JSON escape may hide a long value in a short line).
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from prune_dagster.core.errors import DatasetError

CHUNK_BYTES = 1 << 22  # 4 MiB per read: large enough for speed, small enough to never matter for memory
_NEWLINE, _QUOTE, _COMMA = 10, 34, 44
# A JSON string token, possibly cut off by the end of the prefix, and whether a ':' follows (a key).
_JSON_STRING = re.compile(r'"((?:[^"\\]|\\.)*)("?)\s*(:?)', re.DOTALL)


def prescan(path: Path, max_bytes: int, fmt: str) -> None:
    """Raise DatasetError for the first byte that is not UTF-8 or the first line longer than `max_bytes`."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line_start = offset = lines_before = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            check_utf8(decoder, chunk, offset, lines_before, path)
            newlines = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == _NEWLINE) + offset
            # The last entry is the line still running at the chunk's end: refused as soon as it is too long.
            ends = np.append(newlines, offset + len(chunk))
            starts = np.concatenate([[line_start], newlines + 1])
            too_long = np.flatnonzero(ends - starts > max_bytes)
            if too_long.size:
                k = int(too_long[0])
                raise long_line_error(path, lines_before + k + 1, int(starts[k]), max_bytes, fmt)
            if newlines.size:
                line_start = int(newlines[-1]) + 1
            lines_before += int(newlines.size)
            offset += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text: the file ends inside a multi-byte character (byte offset "
                           f"{offset - 1}, line {lines_before + 1}); save it as UTF-8") from exc


def check_utf8(decoder: codecs.IncrementalDecoder, chunk: bytes, offset: int, lines_before: int, path: Path) -> None:
    """Decode `chunk` (the text itself is dropped: only validity matters); name the offset and line of a bad byte."""
    pending = len(decoder.getstate()[0])  # bytes of a character split across the previous chunk's end
    try:
        decoder.decode(chunk)
    except UnicodeDecodeError as exc:
        at = offset - pending + exc.start
        line = lines_before + chunk[:max(0, exc.start - pending)].count(b"\n") + 1
        bad = (exc.object[exc.start:exc.start + 1] or b"?").hex()
        raise DatasetError(f"{path}: not UTF-8 text: byte 0x{bad} at byte offset {at} (line {line}); save the file "
                           "as UTF-8") from exc


def long_line_error(path: Path, line: int, start: int, max_bytes: int, fmt: str) -> DatasetError:
    """The error for a line longer than `max_bytes`, naming the column whose field crosses the limit."""
    if line == 1 and fmt == "csv":
        where = "the header line"
    else:
        column = csv_column_at(path, start, max_bytes) if fmt == "csv" else json_key_at(path, start, max_bytes)
        where = f"line {line}" + (f", column {column!r}" if column else "")
    return DatasetError(f"{path}: {where} is longer than max_text_bytes={max_bytes} bytes; the file was not "
                        "parsed (raise max_text_bytes if such long values are expected)")


def csv_column_at(path: Path, start: int, max_bytes: int) -> str:
    """The header name of the field holding byte `start + max_bytes` of its line: commas outside quotes are
    counted in the line's first `max_bytes` bytes only, chunk by chunk."""
    with open(path, "rb") as fh:
        header = next(csv.reader([fh.readline(max_bytes).decode("utf-8", "replace")]), [])
        fh.seek(start)
        fields, quotes, left = 0, 0, max_bytes
        while left > 0 and (chunk := fh.read(min(CHUNK_BYTES, left))):
            arr = np.frombuffer(chunk, dtype=np.uint8)
            is_quote = arr == _QUOTE
            inside = (quotes + np.cumsum(is_quote) - is_quote) % 2 == 1  # doubled quotes toggle twice: no effect
            fields += int(((arr == _COMMA) & ~inside).sum())
            quotes += int(is_quote.sum())
            left -= len(chunk)
    return header[fields].strip() if fields < len(header) else f"#{fields + 1} (beyond the header's columns)"


def json_key_at(path: Path, start: int, max_bytes: int) -> str:
    """The key of the JSON value running at byte `max_bytes` of the line (the last key in its prefix)."""
    with open(path, "rb") as fh:
        fh.seek(start)
        prefix = fh.read(max_bytes).decode("utf-8", "replace")
    key = ""
    for match in _JSON_STRING.finditer(prefix):
        if not match.group(2):  # an unterminated string: the long value itself
            break
        if match.group(3):
            try:
                key = json.loads(f'"{match.group(1)}"')
            except ValueError:
                key = match.group(1)
    return key


def csv_header(path: Path) -> list[str]:
    """The header row's names as the csv module reads them (pandas renames a repeated name 'a' to 'a.1')."""
    with open(path, encoding="utf-8", newline="") as fh:
        return next(csv.reader(fh), [])


def first_wide_line(path: Path, width: int) -> tuple[int, int]:
    """(line, fields) of the first data row with more than `width` fields; (0, 0) if none (error path only)."""
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        for row in reader:
            if len(row) > width:
                return reader.line_num, len(row)
    return 0, 0


def check_value_lengths(frame: pd.DataFrame, where: str, max_bytes: int) -> None:
    """Refuse a parsed string value longer than `max_bytes` UTF-8 bytes, naming its row and column."""
    for column in frame.columns:
        values = frame[column]
        if not (values.dtype == object or isinstance(values.dtype, pd.StringDtype)):
            continue  # numbers, categories, dates: no long strings
        chars = values.str.len() if values.dtype != object else values.map(_length_or_nan)
        # A character is 1 to 4 bytes: only values of more than max_bytes / 4 characters can be too long.
        maybe = np.flatnonzero(chars.to_numpy(dtype=np.float64, na_value=0.0) > max_bytes // 4)
        for pos in maybe:
            size = len(str(values.iloc[pos]).encode("utf-8", "surrogatepass"))
            if size > max_bytes:
                raise DatasetError(f"{where}: row {pos + 1}, column {column!r} holds {size} bytes, more than "
                                   f"max_text_bytes={max_bytes}")


def _length_or_nan(value: object) -> float:
    return float(len(value)) if isinstance(value, str) else np.nan
