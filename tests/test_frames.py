"""CSV, Parquet and JSONL files into a Dataset (frames.py): kinds, typing, and one clear error per bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from prune_dagster.core.data import frame_scan, frames
from prune_dagster.core.data.frames import FRAME_SUFFIXES, FrameOptions, load_frame_file
from prune_dagster.core.errors import DatasetError

CSV = ("age,color,income,label\n"
       "39, red,1000.5,yes\n"
       "?,blue,-0.0,no\n"
       "51,red ,,yes\n"
       "23,,7,no\n")


def write(tmp_path, name: str, text: str | bytes):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def error_of(path, **options) -> str:
    with pytest.raises(DatasetError) as info:
        load_frame_file(path, FrameOptions(**options))
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_csv_table_round_trip(tmp_path):
    path = write(tmp_path, "t.csv", CSV)
    data = load_frame_file(path)
    assert data.kind == "table" and data.source == str(path) and FRAME_SUFFIXES == (".csv", ".parquet", ".jsonl")
    assert data.ids.tolist() == ["row1", "row2", "row3", "row4"]
    assert data.class_names == ("no", "yes") and data.labels.tolist() == [1, 0, 1, 0]
    table = data.table
    assert list(table.columns) == ["age", "color", "income"]
    assert table["age"].dtype == np.float64 and np.isnan(table["age"][1])  # "?" is a missing-value marker
    assert table["income"].tolist()[:2] == [1000.5, 0.0] and np.isnan(table["income"][2])
    assert isinstance(table["color"].dtype, pd.CategoricalDtype)
    assert table["color"].tolist()[:3] == ["red", "blue", "red"] and pd.isna(table["color"][3])  # stripped
    assert data.load_info == {"format": "csv", "kind": "table", "label_column": "label", "id_column": "",
                              "numeric_columns": ["age", "income"], "categorical_columns": ["color"],
                              "ignored_columns": []}
    assert len(data.split) == 0


def test_csv_id_and_split_columns(tmp_path):
    path = write(tmp_path, "s.csv", "id,x,label,part\n007,1,3,TRAIN\nb,2,10,test\nc,3,3, Train\n")
    data = load_frame_file(path, FrameOptions(split_column="part"))
    assert data.ids.tolist() == ["007", "b", "c"]  # ids as written, not parsed as numbers
    assert data.class_names == ("3", "10")  # whole-number labels sort as numbers
    assert data.split.tolist() == ["train", "test", "train"]
    assert list(data.table.columns) == ["x"]


def test_parquet_table_round_trip(tmp_path):
    frame = pd.DataFrame({"id": [10, 11, 12], "n": [1, 2, 3], "c": ["a", "b", None], "label": [0, 1, 1]})
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    data = load_frame_file(path)
    assert data.kind == "table" and data.load_info["format"] == "parquet"
    assert data.ids.tolist() == ["10", "11", "12"] and data.labels.tolist() == [0, 1, 1]
    assert data.table["n"].dtype == np.float64 and data.table["n"].tolist() == [1.0, 2.0, 3.0]
    assert data.table["c"].tolist()[:2] == ["a", "b"] and pd.isna(data.table["c"][2])


def test_parquet_and_jsonl_refuse_nested_values_and_read_na_values(tmp_path):
    path = tmp_path / "lists.parquet"
    pd.DataFrame({"a": [[1, 2], [3]], "label": ["x", "y"]}).to_parquet(path)
    assert "row 1, column 'a' holds a nested value" in error_of(path)
    path = write(tmp_path, "na.jsonl", '{"a": "?", "label": "x"}\n{"a": 2.5, "label": "y"}\n')
    data = load_frame_file(path)
    assert data.table["a"].dtype == np.float64 and np.isnan(data.table["a"][0]) and data.table["a"][1] == 2.5


def test_jsonl_text_round_trip(tmp_path):
    rows = [{"id": "a", "text": "good film", "label": "pos", "stars": 5}, {"id": "b", "text": None, "label": "neg"},
            {"id": "c", "text": "bad", "label": "neg", "stars": 1}]
    path = write(tmp_path, "t.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    data = load_frame_file(path)
    assert data.kind == "text" and data.texts.tolist() == ["good film", "", "bad"]  # missing text kept as ""
    assert data.ids.tolist() == ["a", "b", "c"] and data.class_names == ("neg", "pos")
    assert data.load_info["ignored_columns"] == ["stars"] and data.load_info["format"] == "jsonl"
    table = load_frame_file(path, FrameOptions(kind="table"))  # the same file as a table
    assert table.kind == "table" and list(table.table.columns) == ["text", "stars"]


@pytest.mark.parametrize(("name", "text", "options", "expected"), [
    ("nolabel.csv", "a,b\n1,2\n", {}, ["no column 'label'", "['a', 'b']"]),
    ("nanlabel.csv", "a,label\n1,x\n2,\n3,y\n", {}, ["row 2", "column 'label'"]),
    ("wide.csv", "a,label\n1,x\n2,y,3\n", {}, ["line 3", "3 fields", "expected 2"]),
    ("allwide.csv", "a,label\n1,x,9\n2,y,8\n", {}, ["line 2", "3 fields", "expected 2"]),
    ("dupcol.csv", "a,a,label\n1,2,x\n2,3,y\n", {}, ["repeats column name(s) ['a']"]),
    ("empty.csv", "", {}, ["empty"]),
    ("header.csv", "a,label\n", {}, ["no data rows"]),
    ("nofeat.csv", "id,label\n1,x\n2,y\n", {}, ["no feature columns"]),
    ("oneclass.csv", "a,label\n1,x\n2,x\n", {}, ["single class", "'x'"]),
    ("mixed.csv", "age,label\n" + "".join(f"{k},{'ab'[k % 2]}\n" for k in range(20)).replace("17,", "abc,"),
     {}, ["column 'age' mixes numbers and text", "row 18: 'abc'", "na_values"]),
    ("dupid.csv", "id,a,label\nx,1,p\ny,2,q\nx,3,p\n", {}, ["repeats id 'x'", "rows [1, 3]"]),
    ("split.csv", "a,label,s\n1,x,train\n2,y,valid\n", {"split_column": "s"}, ["row 2", "column 's'", "'valid'"]),
    ("notext.csv", "a,label\n1,x\n2,y\n", {"kind": "text"}, ["no column 'text'"]),
    ("badjson.jsonl", '{"a": 1, "label": "x"}\n{"a": 2, label}\n', {}, ["line 2", "not valid JSON"]),
    ("list.jsonl", '{"a": 1, "label": "x"}\n[1, 2]\n', {}, ["line 2", "JSON list"]),
    ("nested.jsonl", '{"a": 1, "label": "x"}\n{"a": {"b": 2}, "label": "y"}\n', {}, ["row 2", "column 'a'", "dict"]),
    ("nestedlabel.jsonl", '{"a": 1, "label": ["x"]}\n{"a": 2, "label": "y"}\n', {}, ["row 1", "column 'label'"]),
    ("data.txt", "a,label\n", {}, ["unknown suffix '.txt'"]),
])
def test_bad_input_names_file_row_and_column(tmp_path, name, text, options, expected):
    message = error_of(write(tmp_path, name, text), **options)
    for part in expected:
        assert part in message, message


def test_not_utf8_names_offset_and_line(tmp_path):
    path = write(tmp_path, "latin.csv", "a,label\n1,x\n2,caf\xe9\n".encode("latin-1"))
    message = error_of(path)
    assert "not UTF-8" in message and "byte offset 17" in message and "line 3" in message and "0xe9" in message


def test_not_utf8_across_chunk_boundary(tmp_path, monkeypatch):
    monkeypatch.setattr(frame_scan, "CHUNK_BYTES", 7)
    good = write(tmp_path, "ok.csv", "a,label\n1,xé\n2,é\n")  # 2-byte characters split across chunks: fine
    assert load_frame_file(good).class_names == ("xé", "é")
    assert "byte offset 10" in error_of(write(tmp_path, "bad.csv", b"a,label\n1,\xff\n2,y\n"))


def test_long_field_is_refused_without_reading_it(tmp_path, monkeypatch):
    path = write(tmp_path, "long.csv", 'id,label,text\na,x,short\nb,y,"' + "z" * 50_000 + '"\nc,x,ok\n')
    read: list[int] = []

    class Counting:
        """A binary file that records how many bytes each read returns."""

        def __init__(self, file, mode):
            self.handle = open(file, mode)  # noqa: SIM115 - closed by __exit__

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def read(self, size=-1):
            data = self.handle.read(size)
            read.append(len(data))
            return data

        def readline(self, size=-1):
            data = self.handle.readline(size)
            read.append(len(data))
            return data

        def seek(self, offset):
            return self.handle.seek(offset)

    monkeypatch.setattr(frame_scan, "CHUNK_BYTES", 256)
    monkeypatch.setattr(frame_scan, "open", Counting, raising=False)
    monkeypatch.setattr(frames.pd, "read_csv", lambda *a, **k: pytest.fail("the file must not be parsed"))
    message = error_of(path, max_text_bytes=1000)
    assert "line 3" in message and "column 'text'" in message and "max_text_bytes=1000" in message
    assert 1000 < sum(read) < 5000  # the prescan stopped inside the 50,000-byte field


def test_long_jsonl_value_names_its_key(tmp_path):
    line = json.dumps({"id": "b", "text": "w" * 5000, "label": "y"})
    path = write(tmp_path, "long.jsonl", '{"id": "a", "text": "ok", "label": "x"}\n' + line + "\n")
    message = error_of(path, max_text_bytes=1000)
    assert "line 2" in message and "column 'text'" in message


def test_long_parquet_value_is_refused_after_parsing(tmp_path):
    path = tmp_path / "long.parquet"
    pd.DataFrame({"text": ["ok", "é" * 600], "label": ["x", "y"]}).to_parquet(path)  # 1,200 bytes, 600 chars
    message = error_of(path, max_text_bytes=1000)
    assert "row 2" in message and "column 'text'" in message and "1200 bytes" in message
    assert load_frame_file(path, FrameOptions(max_text_bytes=1200)).texts[1] == "é" * 600


def test_not_a_parquet_file(tmp_path):
    assert "not a readable Parquet file" in error_of(write(tmp_path, "fake.parquet", "a,label\n1,x\n"))


def test_mostly_text_column_is_categorical(tmp_path):
    rows = "".join(f"{v},{'ab'[k % 2]}\n" for k, v in enumerate(["1", "2", "x", "y", "z", "w"]))
    data = load_frame_file(write(tmp_path, "cat.csv", "code,label\n" + rows))
    assert isinstance(data.table["code"].dtype, pd.CategoricalDtype)
    assert data.table["code"].tolist() == ["1", "2", "x", "y", "z", "w"]
