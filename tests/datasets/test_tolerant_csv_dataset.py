import codecs
import logging

import pandas as pd
import pytest
from kedro.io import DatasetError

from multimodal_fusion.datasets import TolerantCSVDataset


def _load(tmp_path, content: bytes, **load_args):
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    return TolerantCSVDataset(filepath=str(path), load_args=load_args).load()


def _records(frame):
    return frame.drop(columns=["_line", "_problem"]).to_dict("records")


def test_reads_a_utf8_bom_and_normalises_the_header(tmp_path):
    frame = _load(tmp_path, codecs.BOM_UTF8 + " ID , Text \nc1,héllo\n".encode())
    assert _records(frame) == [{"id": "c1", "text": "héllo"}]
    assert frame["_line"].tolist() == [2]


def test_reads_windows_1252_lines_among_utf8_ones(tmp_path, caplog):
    content = "id,text\nc1,café\n".encode() + "c2,caf\xe9 \u20ac5\n".encode("cp1252")
    with caplog.at_level(logging.WARNING):
        frame = _load(tmp_path, content)
    assert frame["text"].tolist() == ["café", "café €5"]
    assert "1 line(s) are not valid UTF-8" in caplog.text
    assert "café" not in caplog.text  # the log names lines, never their content


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_reads_utf16_and_utf32_with_a_bom(tmp_path, encoding):
    frame = _load(tmp_path, "id\ttext\nc1\tü\n".encode(encoding))
    assert _records(frame) == [{"id": "c1", "text": "ü"}]


def test_guesses_semicolons_and_keeps_quoted_newlines_and_quotes(tmp_path):
    content = b'id;text\r\nc1;"two\r\nlines, ""quoted"""\r\nc2;x\r\n'
    frame = _load(tmp_path, content)
    assert frame["text"].tolist() == ['two\r\nlines, "quoted"', "x"]
    assert frame["_line"].tolist() == [2, 4]


def test_reads_fields_longer_than_csv_s_default_limit(tmp_path):
    frame = _load(tmp_path, b"id,text\nc1," + b"a" * 200_000 + b"\n")
    assert len(frame["text"][0]) == 200_000


def test_flags_bad_rows_pads_short_ones_and_skips_blank_lines(tmp_path):
    content = b"id,text\nc1,a,b\nc2,x,,\nc3\n\n,,\nid,text\n"
    frame = _load(tmp_path, content)
    assert frame[["id", "text", "_line"]].values.tolist() == [
        ["c1", "a", 2],
        ["c2", "x", 3],
        ["c3", "", 4],
        ["id", "text", 7],
    ]
    problems = frame["_problem"].tolist()
    assert problems[0].startswith("the row has 3 fields where the header has 2")
    assert problems[1:3] == ["", ""]
    assert "repeats the header" in problems[3]


def test_selects_columns(tmp_path):
    frame = _load(tmp_path, b"id,text,label\nc1,a,x\n", columns=["id", "label"])
    assert list(frame.columns) == ["id", "label", "_line", "_problem"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"  \n\n", "is empty"),
        (b'id,text\nc1,"never closed\nc2,x\n', "line 2: a quoted field opens"),
        (b"id,id\n1,2\n", r"names the column\(s\) \['id'\] more than once"),
        (b"\x00\x01" * 100, "looks binary"),
        (codecs.BOM_UTF16_LE + b"\x00\xd8", "UTF-16 byte-order mark"),
    ],
)
def test_unreadable_files_fail_with_the_file_and_what_to_do(tmp_path, content, message):
    with pytest.raises(DatasetError, match=message) as caught:
        _load(tmp_path, content)
    assert "data.csv" in str(caught.value)


def test_round_trip_writes_utf8_without_the_added_columns(tmp_path):
    dataset = TolerantCSVDataset(filepath=str(tmp_path / "out.csv"))
    dataset.save(pd.DataFrame({"id": ["c1"], "text": ['ü, "q"']}))
    assert (tmp_path / "out.csv").read_bytes() == 'id,text\nc1,"ü, ""q"""\n'.encode()
    loaded = dataset.load()
    assert _records(loaded) == [{"id": "c1", "text": 'ü, "q"'}]
    dataset.save(loaded)  # _line and _problem are not written back
    assert (tmp_path / "out.csv").read_text().splitlines()[0] == "id,text"
