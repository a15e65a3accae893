"""``TolerantCSVDataset`` reads a CSV of text records as written by spreadsheets
and export tools, without giving up on the whole file for one bad row.

- Encoding: a UTF-8, UTF-16 or UTF-32 byte-order mark is honoured; otherwise each
  line is read as UTF-8 and, when it is not valid UTF-8, as Windows-1252 (the
  encoding of Excel's plain "CSV" on Windows), so a file that mixes the two
  still loads. Lines read that way are counted in a warning.
- Separator: comma, semicolon, tab or pipe, guessed from the header line unless
  ``load_args: {delimiter: ...}`` fixes it.
- Quotes and newlines inside quoted fields follow RFC 4180; fields of any size.
- Header names are stripped and lower-cased (``" ID"`` → ``"id"``).
- Rows: blank lines are skipped; a row with fewer fields than the header is
  padded with empty strings; a row with extra non-empty fields, or one that
  repeats the header (two files concatenated), is kept but flagged.

Every value is a string. Two columns are added for the pipeline's accounting:
``_line``, the line of the file where the record starts, and ``_problem``, why
the row cannot be trusted ("" when it can). A file that cannot be read at all (a
quote that is never closed, no header, binary data) raises an
``UnreadableFileError`` (a ``DatasetError`` and a user error) that names the
file, the line and what to do.

Saving writes UTF-8 (no index); the two added columns are not written.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
from typing import Any

import pandas as pd
from kedro.io.core import get_filepath_str

from multimodal_fusion.errors import UnreadableFileError

from .file_dataset import FileDataset

logger = logging.getLogger(__name__)

LINE_COLUMN = "_line"
PROBLEM_COLUMN = "_problem"
_DELIMITERS = ",;\t|"
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_FIELD_LIMIT = 2**31 - 1  # csv's default (128 KiB) would fail a long message


class TolerantCSVDataset(FileDataset[pd.DataFrame, pd.DataFrame]):
    """Loads a CSV of text records as a DataFrame of strings (see the module).

    ``load_args``: ``delimiter`` (None: guess among ``, ; TAB |``), ``columns``
    (names to keep; None keeps all), ``fallback_encoding`` (for lines that are not
    UTF-8; default ``cp1252``). ``save_args`` go to ``DataFrame.to_csv``
    (``index`` is False). The other arguments are
    :class:`~multimodal_fusion.datasets.file_dataset.FileDataset`'s.

    Example (catalog YAML):

    .. code-block:: yaml

        raw_texts:
          type: multimodal_fusion.datasets.TolerantCSVDataset
          filepath: data/01_raw/texts.csv
          load_args:
            columns: [id, text]   # keep these (when present); default: all
    """

    DEFAULT_LOAD_ARGS: dict[str, Any] = {
        "delimiter": None,
        "columns": None,
        "fallback_encoding": "cp1252",
    }
    DEFAULT_SAVE_ARGS: dict[str, Any] = {"index": False}

    def __init__(self, *, missing_ok: bool = False, **kwargs: Any) -> None:
        """Creates the dataset.

        Args:
            missing_ok: Whether a missing file loads as an empty table (with the
                ``columns`` of ``load_args``), for an optional input such as the
                labels of a batch to score.
            kwargs: :class:`~multimodal_fusion.datasets.file_dataset.FileDataset`'s
                arguments.
        """
        super().__init__(**kwargs)
        self._missing_ok = missing_ok

    def load(self) -> pd.DataFrame:
        if self._missing_ok and not self._exists():
            return pd.DataFrame(columns=self._load_args["columns"] or [], dtype=str)
        load_path = self._load_path()
        with self._fs.open(load_path, mode="rb") as handle:
            raw = handle.read()
        return self._parse(self._decode(raw, load_path), load_path)

    def save(self, data: pd.DataFrame) -> None:
        save_path = get_filepath_str(self._get_save_path(), self._protocol)
        data = data.drop(columns=[LINE_COLUMN, PROBLEM_COLUMN], errors="ignore")
        with self._fs.open(save_path, mode="w", encoding="utf-8", newline="") as f:
            data.to_csv(f, **self._save_args)
        self._invalidate_cache()

    # --- reading ---------------------------------------------------------------

    def _decode(self, raw: bytes, name: str) -> str:
        if not raw.strip():
            raise UnreadableFileError(
                f"'{name}' is empty. It needs a header line (for example 'id,text') "
                "and one line per record."
            )
        raw = raw.removeprefix(codecs.BOM_UTF8)  # then read line by line below
        for bom, encoding in _BOMS:
            if raw.startswith(bom):
                try:
                    return raw.decode(encoding).lstrip("\ufeff")
                except UnicodeDecodeError as err:
                    raise UnreadableFileError(
                        f"'{name}' starts with a {encoding.upper()} byte-order mark "
                        f"but byte {err.start} is not {encoding.upper()}. Re-save "
                        "the file as UTF-8."
                    ) from err
        if raw[:4096].count(0) > len(raw[:4096]) // 10:
            raise UnreadableFileError(
                f"'{name}' looks binary (or UTF-16 without a byte-order mark), not "
                "like a CSV file. Export it as 'CSV UTF-8'."
            )
        fallback = self._load_args["fallback_encoding"]
        lines, fallback_lines = [], []
        for number, line in enumerate(raw.split(b"\n"), start=1):
            try:
                lines.append(line.decode("utf-8"))
            except UnicodeDecodeError:
                lines.append(line.decode(fallback, errors="replace"))
                fallback_lines.append(number)
        if fallback_lines:
            logger.warning(
                "'%s': %d line(s) are not valid UTF-8 and were read as %s (first: "
                "line %d). Re-save the file as UTF-8 if some characters look wrong.",
                name,
                len(fallback_lines),
                fallback,
                fallback_lines[0],
            )
        return "\n".join(lines).lstrip("\ufeff")

    def _parse(self, text: str, name: str) -> pd.DataFrame:
        csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
        first_line = text.split("\n", 1)[0]
        delimiter = self._load_args["delimiter"] or max(
            _DELIMITERS, key=first_line.count
        )
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        records: list[tuple[int, list[str]]] = []
        start = 1
        try:
            for fields in reader:
                records.append((start, fields))
                start = reader.line_num + 1
        except csv.Error as err:
            raise UnreadableFileError(
                f"'{name}' line {start}: {err}. Fix that line (quote fields that "
                "contain the separator, a quote or a line break)."
            ) from err
        _check_last_quote(text, records, reader.line_num, name)
        records = [(n, f) for n, f in records if any(v.strip() for v in f)]
        if not records:
            raise UnreadableFileError(f"'{name}' has no header line.")
        header = _header(records[0][1], name)
        rows, lines, problems = [], [], []
        for line, fields in records[1:]:
            rows.append((fields + [""] * len(header))[: len(header)])
            lines.append(line)
            problems.append(_row_problem(fields, header))
        frame = pd.DataFrame(rows, columns=header, dtype=object)
        wanted = self._load_args["columns"]
        if wanted:
            frame = frame[[c for c in header if c in set(wanted)]]
        frame[LINE_COLUMN] = pd.Series(lines, dtype="int64")
        frame[PROBLEM_COLUMN] = pd.Series(problems, dtype=object)
        return frame


def _check_last_quote(
    text: str, records: list[tuple[int, list[str]]], last_line: int, name: str
) -> None:
    """A quote left open swallows the rest of the file into the last record."""
    if not records:
        return
    start = records[-1][0]
    if last_line > start:
        lines = io.StringIO(text, newline="").readlines()
        span = "".join(lines[start - 1 : last_line])
        if span.count('"') % 2:
            raise UnreadableFileError(
                f"'{name}' line {start}: a quoted field opens on this line and is "
                "never closed, so the rest of the file would be read as one value. "
                'Close the quote, or double a quote inside a field ("").'
            )


def _header(fields: list[str], name: str) -> list[str]:
    header = [f.strip().lstrip("\ufeff").strip().lower() for f in fields]
    while header and not header[-1]:  # trailing separators
        header.pop()
    header = [h or f"unnamed_{i}" for i, h in enumerate(header)]
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise UnreadableFileError(
            f"'{name}': the header names the column(s) {repeated} more than once. "
            "Rename or remove the repeated columns."
        )
    return header


def _row_problem(fields: list[str], header: list[str]) -> str:
    extra = [f for f in fields[len(header) :] if f.strip()]
    if extra:
        return (
            f"the row has {len(header) + len(extra)} fields where the header has "
            f"{len(header)}: quote any field that contains the separator"
        )
    if [f.strip().lower() for f in fields[: len(header)]] == header:
        return "the row repeats the header (were two files concatenated?)"
    return ""
