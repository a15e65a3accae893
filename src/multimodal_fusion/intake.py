"""Validation, cleaning and joining of raw records: shared by the training
pipeline (``data_processing``), the ``inference`` pipeline and the model package,
so that a contact to predict goes through exactly what the training data went
through.

Every raw record (a CSV row, an audio file) is either used or listed in
``rejected`` with a stable ``reason`` code and a ``detail`` that says what is
wrong and what to do; every raw id ends in exactly one place. A bad record of one
modality (say an undecodable clip) is rejected while its id may live on with the
other modality.

Nothing in ``rejected`` or in the logs quotes a message: details name rows,
files, counts and limits; a quoted label or column name is PII-masked first.
"""

from __future__ import annotations

import functools
import logging
import unicodedata
from collections import Counter
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

import pandas as pd

from multimodal_fusion.audio import (
    AudioLimits,
    AudioProblem,
    clip_source,
    inspect_clip,
    key_problem,
    prepare_source,
)
from multimodal_fusion.datasets.tolerant_csv_dataset import LINE_COLUMN, PROBLEM_COLUMN
from multimodal_fusion.errors import UserInputError
from multimodal_fusion.text import clean_text, mask_pii, normalise_text

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


REJECTED_COLUMNS = ["id", "source", "location", "reason", "detail"]
LABEL_COLUMNS = ["label", "speaker", "split"]


INDEX_COLUMNS = [
    "id",
    "source_file",
    "format",
    "source_rate",
    "channels",
    "duration_s",
    "peak_dbfs",
    "rms_dbfs",
    "clipped_share",
    "snr_db",
]


MAX_ID_LENGTH = 200


LISTED = 5  # locations named in a detail before "and N more"


def _rejected(rows: list[dict[str, str]] | None = None) -> pd.DataFrame:
    return pd.DataFrame(rows or [], columns=REJECTED_COLUMNS, dtype=object)


def _together(*frames: pd.DataFrame) -> pd.DataFrame:
    """Rejected rows made by :func:`_rejected`, in one frame (``pd.concat``
    only when two of them hold rows: it is the larger cost of a served
    request's validation otherwise)."""
    full = [frame for frame in frames if len(frame)]
    if len(full) > 1:
        return pd.concat(full, ignore_index=True)
    return full[0] if full else frames[0]


def quote(value: Any, limit: int = 40) -> str:
    """A value safe to show in a detail or a log: normalised, PII-masked, short."""
    text = mask_pii(normalise_text(str(value)))
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def listing(items: list[str]) -> str:
    shown = ", ".join(items[:LISTED])
    return shown + (f" and {len(items) - LISTED} more" if len(items) > LISTED else "")


def clean_id(value: Any) -> str:
    """An id as it is matched across the raw datasets: Unicode NFC (file names
    from macOS come decomposed), outer whitespace and invisible marks removed."""
    text = unicodedata.normalize("NFC", str(value))
    return text.strip().strip("\ufeff\u200b\u200e\u200f").strip()


def _id_problem(record_id: str) -> tuple[str, str] | None:
    if not record_id:
        return "missing_id", "the id is empty: every record needs one"
    if (
        any(c in record_id for c in "/\\")
        or record_id in {".", ".."}
        or any(unicodedata.category(c)[0] == "C" for c in record_id)
    ):
        return (
            "invalid_id",
            "the id holds a path separator, '..' or a control character; ids name "
            "files downstream, so they must be plain names",
        )
    if len(record_id) > MAX_ID_LENGTH:
        return (
            "invalid_id",
            f"the id has {len(record_id)} characters, more than {MAX_ID_LENGTH}",
        )
    return None


def as_table(raw: Any, columns: list[str]) -> pd.DataFrame:
    """A raw table as a DataFrame. A ``MemoryDataset`` declaring no records
    (``data: {}``, or None) is an empty table with the required columns; a
    mapping of columns is read as a table."""
    if isinstance(raw, pd.DataFrame):
        return raw
    return pd.DataFrame(raw or {}, columns=None if raw else columns)


def _require_columns(frame: pd.DataFrame, columns: list[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        present = [quote(c, 30) for c in frame.columns if not str(c).startswith("_")]
        raise UserInputError(
            f"{name} lacks the column(s) {missing}; its header has "
            f"[{', '.join(present)}]. Fix the header of the file behind the "
            f"'{name}' catalog entry (docs/your-data.md)."
        )


def _records(
    raw: pd.DataFrame, source: str, columns: list[str], optional: list[str] = ()
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of a raw table with clean ids and their locations, minus the
    rows that cannot be used whatever their content (malformed, bad id).

    Cells become text ("" where missing) in plain lists and the kept rows
    become one frame: this runs for every served request, where a dozen
    small pandas operations cost more than the checks themselves.
    """
    _require_columns(raw, columns, source)
    n = len(raw)
    values = {
        c: [_text(v) for v in raw[c]] if c in raw else [""] * n
        for c in [*columns, *optional]
    }
    values["id"] = [clean_id(v) for v in values["id"]]
    values["location"] = (
        [f"line {line}" for line in raw[LINE_COLUMN]]
        if LINE_COLUMN in raw
        else [f"row {i + 1}" for i in range(n)]
    )
    problems = (
        [_text(p) for p in raw[PROBLEM_COLUMN]] if PROBLEM_COLUMN in raw else [""] * n
    )
    rows, keep = [], []
    for i, (record_id, problem) in enumerate(zip(values["id"], problems, strict=True)):
        reason = ("malformed_row", problem) if problem else _id_problem(record_id)
        if reason is None:
            keep.append(i)
            continue
        rows.append(
            {
                "id": record_id[:MAX_ID_LENGTH],
                "source": source,
                "location": values["location"][i],
                "reason": reason[0],
                "detail": reason[1],
            }
        )
    kept = pd.DataFrame(
        {c: pd.Series([v[i] for i in keep], dtype=str) for c, v in values.items()}
    )
    return kept, _rejected(rows)


def _deduplicate(
    frame: pd.DataFrame, source: str, content: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per id. Exact copies of a row (same id, same content) are
    rejected as ``duplicate_row`` and the first copy is kept; rows that share an
    id but differ are all rejected as ``duplicate_id`` (which one is right?)."""
    repeated = frame["id"].duplicated(keep=False)
    if not repeated.any():
        return frame, _rejected()
    rows, drop = [], set()
    for record_id, group in frame[repeated].groupby("id", sort=True):
        locations = group["location"].tolist()
        if len(group.drop_duplicates(subset=content)) == 1:
            drop.update(group.index[1:])
            rows += [
                {
                    "id": record_id,
                    "source": source,
                    "location": location,
                    "reason": "duplicate_row",
                    "detail": f"an exact copy of {locations[0]}; the first copy is "
                    "used",
                }
                for location in locations[1:]
            ]
        else:
            drop.update(group.index)
            rows += [
                {
                    "id": record_id,
                    "source": source,
                    "location": location,
                    "reason": "duplicate_id",
                    "detail": f"{len(group)} rows of {source} have this id with "
                    f"different content ({listing(locations)}); keep one row per id",
                }
                for location in locations
            ]
    return frame.drop(index=sorted(drop)).reset_index(drop=True), _rejected(rows)


def _log_rejections(source: str, total: int, rejected: pd.DataFrame) -> None:
    if rejected.empty:
        logger.info("%s: all %d records accepted", source, total)
        return
    counts = ", ".join(f"{r}: {n}" for r, n in Counter(rejected["reason"]).items())
    logger.warning(
        "%s: %d of %d records rejected (%s); see the 'rejected' dataset",
        source,
        len(rejected),
        total,
        counts,
    )


def clean_texts(
    raw_texts: pd.DataFrame, params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validates typed messages and cleans them.

    Args:
        raw_texts: Columns ``id,text``; text may be empty.
        params: ``lowercase`` (bool) and ``max_chars`` (longer texts are rejected
            as ``text_too_long``, never cut).

    Returns:
        Clean texts ``id,text`` (normalised, PII masked; empty text kept as ""),
        and the rejected rows.
    """
    raw_texts = as_table(raw_texts, ["id", "text"])
    texts, rejected = _records(raw_texts, "raw_texts", ["id", "text"])
    texts, duplicates = _deduplicate(texts, "raw_texts", ["text"])
    max_chars = params.get("max_chars")
    too_long = [
        (i, len(text))
        for i, text in enumerate(texts["text"])
        if max_chars and len(text) > max_chars
    ]
    long_rows = _rejected(
        [
            {
                "id": texts["id"][i],
                "source": "raw_texts",
                "location": texts["location"][i],
                "reason": "text_too_long",
                "detail": f"the text has {length:,} characters, more than max_chars "
                f"({max_chars:,}, data_processing.text); shorten it or raise the "
                "limit",
            }
            for i, length in too_long
        ]
    )
    if too_long:
        texts = texts.drop(index=[i for i, _ in too_long]).reset_index(drop=True)
    lowercase = params["lowercase"]
    texts["text"] = [clean_text(t, lowercase=lowercase) for t in texts["text"]]
    rejected = _together(rejected, duplicates, long_rows)
    _log_rejections("raw_texts", len(raw_texts), rejected)
    return texts[["id", "text"]], rejected


def clean_labels(
    raw_labels: pd.DataFrame, params: dict[str, Any] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validates labels; optional columns ``speaker`` and ``split`` are kept.

    For training (``params`` given) it also checks that at least two classes
    have ``min_class_size`` labelled rows (no classifier can be trained with
    fewer); this node runs before ``prepare_audio``, so a bad label file stops
    the run before any audio is decoded.

    Args:
        raw_labels: Columns ``id,label`` and optionally ``speaker``, ``split``.
        params: ``min_class_size``; None (labels of contacts to predict) skips
            the class check.

    Returns:
        Labels ``id,label,speaker,split`` (empty strings where absent; an empty
        label means unlabeled), and the rejected rows.

    Raises:
        UserInputError: when fewer than two classes have enough labelled rows.
    """
    raw_labels = as_table(raw_labels, ["id", "label"])
    labels, rejected = _records(
        raw_labels, "raw_labels", ["id", "label"], ["speaker", "split"]
    )
    for column in ("label", "speaker", "split"):
        labels[column] = labels[column].map(normalise_text)
    labels, duplicates = _deduplicate(
        labels, "raw_labels", ["label", "speaker", "split"]
    )
    labels["split"] = labels["split"].str.lower()
    bad_split = ~labels["split"].isin(("", *SPLITS))
    bad_rows = _rejected(
        [
            {
                "id": row.id,
                "source": "raw_labels",
                "location": row.location,
                "reason": "invalid_split",
                "detail": f"split {quote(row.split, 20)} is not one of "
                f"{list(SPLITS)} or empty",
            }
            for row in labels[bad_split].itertuples()
        ]
    )
    rejected = _together(rejected, duplicates, bad_rows)
    _log_rejections("raw_labels", len(raw_labels), rejected)
    columns = ["id", "label", "speaker", "split"]
    labels = labels.loc[~bad_split, columns].reset_index(drop=True)
    if params is not None:
        _check_classes(labels, params.get("min_class_size") or 1)
    return labels, rejected


def _check_classes(labels: pd.DataFrame, min_size: int) -> None:
    sizes = labels.loc[labels["label"] != "", "label"].value_counts()
    if (sizes >= min_size).sum() < 2:
        raise UserInputError(
            f"raw_labels has {len(sizes)} class(es), {(sizes >= min_size).sum()} "
            f"of them with at least min_class_size ({min_size}, "
            "data_processing.labels) labelled rows; a classifier needs at least 2. "
            "Add labelled rows of another class, fix the labels, or lower the limit."
        )


def prepare_audio(
    raw_audio: Mapping[str, Any], params: dict[str, Any]
) -> tuple[dict[str, functools.partial], pd.DataFrame, pd.DataFrame]:
    """Checks every clip and hands over the usable ones to be prepared lazily.

    Each clip is checked from its header (a clip longer than the limit is
    rejected there, undecoded) and then block by block; nothing is kept in
    memory but its measures. The returned clips are callables: the
    ``clean_audio`` folder dataset calls them one at a time while saving, each
    decoding its file again and preparing it (mono, resampled, trimmed,
    loudness-normalised). Memory does not grow with the number of clips.

    Args:
        raw_audio: Partition key (file path relative to the audio folder) →
            ``AudioSource`` (or a plain clip or loader). The file stem is the id.
        params: ``sample_rate``, ``top_db``, ``target_dbfs`` for preparation and
            ``limits`` (see ``AudioLimits``).

    Returns:
        Clip preparers keyed by id, an index of the kept clips
        (``INDEX_COLUMNS``), and the rejected files.
    """
    limits = AudioLimits.from_params(params.get("limits"))
    prepare = {k: v for k, v in params.items() if k != "limits"}
    by_id: dict[str, list[str]] = {}
    for key in sorted(raw_audio):
        stem = PurePosixPath(key.replace("\\", "/")).stem
        by_id.setdefault(clean_id(stem), []).append(key)
    clips, index, rows = {}, [], []
    for clip_id, keys in by_id.items():
        problems: dict[str, AudioProblem] = {}
        for key in keys:
            problem = key_problem(key)
            id_problem = _id_problem(clip_id)
            if problem is None and id_problem:
                problem = AudioProblem(*id_problem)
            if problem is None and len(keys) > 1:
                problem = AudioProblem(
                    "duplicate_id",
                    f"{len(keys)} audio files have this id ({listing(keys)}); keep "
                    "one file per id",
                )
            if problem:
                problems[key] = problem
                continue
            source = clip_source(key, raw_audio[key])
            result = inspect_clip(source, limits)
            if isinstance(result, AudioProblem):
                problems[key] = result
                continue
            clips[clip_id] = functools.partial(prepare_source, source, **prepare)
            index.append(
                {
                    "id": clip_id,
                    "source_file": key,
                    "source_rate": result.sample_rate,
                    **result._asdict(),
                }
            )
        rows += [
            {
                "id": clip_id[:MAX_ID_LENGTH],
                "source": "raw_audio",
                "location": key,
                "reason": p.reason,
                "detail": p.detail,
            }
            for key, p in problems.items()
        ]
    audio_index = pd.DataFrame(index, columns=INDEX_COLUMNS)
    rejected = _rejected(rows)
    _log_rejections("raw_audio", len(raw_audio), rejected)
    return clips, audio_index, rejected


def join_contacts(  # noqa: PLR0913, PLR0917
    texts: pd.DataFrame,
    audio_index: pd.DataFrame,
    labels: pd.DataFrame,
    rejected_texts: pd.DataFrame,
    rejected_labels: pd.DataFrame,
    rejected_audio: pd.DataFrame,
    params: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Outer-joins texts, clips and labels by id and decides each id's fate.

    An id is rejected as a whole (``source`` = ``contact``) when it has no usable
    modality (``no_usable_modality``), when its label row was rejected
    (``label_rejected``: a conflicting or invalid label is not "unlabeled"),
    when its id is invalid (``invalid_id``), or when its class has fewer than
    ``min_class_size`` labelled contacts (``rare_class``).

    Args:
        texts: Clean texts ``id,text``.
        audio_index: Kept clips, one row per id.
        labels: ``id,label,speaker,split``.
        rejected_texts: Rejected rows of ``raw_texts``.
        rejected_labels: Rejected rows of ``raw_labels``.
        rejected_audio: Rejected files of ``raw_audio``.
        params: ``min_class_size``.

    Returns:
        Contacts with ``has_text`` / ``has_audio`` flags (at least one is true),
        and every rejected record: the record rows, then one row per rejected id.
    """
    inputs = [rejected_texts, rejected_labels, rejected_audio]
    records = (
        pd.concat([_rejected(), *inputs], ignore_index=True)
        if any(len(frame) for frame in inputs)
        else _rejected()
    )
    # Plain dicts, not DataFrame merges: the join runs for every served request
    # too, where pandas' per-call cost dominated a one-contact prediction.
    text_of = dict(zip(texts["id"], texts["text"], strict=True))
    file_of = dict(zip(audio_index["id"], audio_index["source_file"], strict=True))
    label_of = {
        row[0]: row[1:]
        for row in zip(*(labels[c] for c in ["id", *LABEL_COLUMNS]), strict=True)
    }
    ids = sorted(set(text_of) | set(file_of) | set(label_of))
    no_label = ("",) * len(LABEL_COLUMNS)
    # id -> text, source_file, label, speaker, split ("" where it has none)
    joined = {
        i: tuple(
            _text(v)
            for v in (text_of.get(i), file_of.get(i), *label_of.get(i, no_label))
        )
        for i in ids
    }
    text_ids = set(text_of)
    reasons_of: dict[tuple[str, str], list[str]] = {}
    reasons_by_id: dict[str, set[str]] = {}
    for record_id, source, reason in zip(
        records["id"], records["source"], records["reason"], strict=True
    ):
        if record_id != "":
            reasons_of.setdefault((record_id, source), []).append(reason)
            reasons_by_id.setdefault(record_id, set()).add(reason)
    reasons_of = {key: sorted(set(r)) for key, r in reasons_of.items()}

    verdicts: dict[str, tuple[str, str]] = {}
    for record_id in sorted(set(reasons_by_id) - set(ids)):
        verdicts[record_id] = (
            ("invalid_id", "the id is invalid: see this id's record rows")
            if "invalid_id" in reasons_by_id[record_id]
            else ("no_usable_modality", _modalities(record_id, reasons_of, text_ids))
        )
    for contact_id in ids:
        if not joined[contact_id][0] and contact_id not in file_of:
            verdicts[contact_id] = (
                "no_usable_modality",
                _modalities(contact_id, reasons_of, text_ids),
            )
        elif contact_id not in label_of and (contact_id, "raw_labels") in reasons_of:
            reasons = ", ".join(reasons_of[contact_id, "raw_labels"])
            verdicts[contact_id] = (
                "label_rejected",
                f"its label row was rejected ({reasons}): fix it, or empty the "
                "label to mark the contact unlabeled",
            )
    _set_aside_rare_classes(
        {i: joined[i][2] for i in ids if i not in verdicts and joined[i][2]},
        params.get("min_class_size") or 0,
        verdicts,
    )
    verdict_rows = _rejected(
        [
            {"id": i, "source": "contact", "location": "", "reason": r, "detail": d}
            for i, (r, d) in sorted(verdicts.items())
        ]
    )
    rejected = _together(records, verdict_rows)
    kept = [i for i in ids if i not in verdicts]
    columns = ["text", "source_file", *LABEL_COLUMNS]
    contacts = pd.DataFrame(
        {
            "id": pd.Series(kept, dtype=str),
            **{
                column: pd.Series([joined[i][k] for i in kept], dtype=str)
                for k, column in enumerate(columns)
            },
            "has_text": pd.Series([bool(joined[i][0]) for i in kept], dtype=bool),
            "has_audio": pd.Series([i in file_of for i in kept], dtype=bool),
        }
    )
    logger.info(
        "Joined %d contacts; %d ids rejected (%s)",
        len(contacts),
        len(verdict_rows),
        ", ".join(f"{r}: {n}" for r, n in Counter(verdict_rows["reason"]).items())
        or "none",
    )
    return contacts, rejected


def _text(value: Any) -> str:
    """A joined cell as text: "" where the id had no such value."""
    return "" if pd.isna(value) else str(value)


def _set_aside_rare_classes(
    labelled: dict[str, str], min_size: int, verdicts: dict[str, tuple[str, str]]
) -> None:
    """Adds a ``rare_class`` verdict for each labelled contact whose class has
    fewer than ``min_size`` of them."""
    sizes = Counter(labelled.values())
    rare = {label: n for label, n in sizes.items() if n < min_size}
    for contact_id, label in labelled.items():
        if label in rare:
            verdicts[contact_id] = (
                "rare_class",
                f"label {quote(label)} has {rare[label]} labelled contact(s), "
                f"fewer than min_class_size ({min_size}, data_processing.labels): "
                "too few to train and evaluate it. Add examples, fix the label, "
                "or lower the limit.",
            )
    if rare:
        logger.warning(
            "%d class(es) with fewer than %d labelled contacts were set aside "
            "(rare_class): %d contacts",
            len(rare),
            min_size,
            sum(rare.values()),
        )


def raw_record_ids(
    raw_texts: Any,
    raw_labels: Any,
    audio_index: pd.DataFrame,
    rejected: pd.DataFrame,
) -> set[str]:
    """Every distinct non-empty id among the raw records, as the join matches
    them: text and label rows, kept clips and rejected clips."""
    return (
        {clean_id(i) for i in as_table(raw_texts, ["id", "text"]).get("id", [])}
        | {clean_id(i) for i in as_table(raw_labels, ["id", "label"]).get("id", [])}
        | set(rejected.loc[rejected["source"] == "raw_audio", "id"])
        | set(audio_index["id"])
    ) - {""}


def _modalities(
    record_id: str,
    reasons_of: dict[tuple[str, str], list[str]],
    text_ids: set[str],
) -> str:
    """Why an id has neither text nor audio, from its records' fates."""

    def state(source: str) -> str:
        if (record_id, source) in reasons_of:
            return f"rejected ({', '.join(reasons_of[record_id, source])})"
        return "none"

    text = "empty" if record_id in text_ids else state("raw_texts")
    return f"no usable text or audio: text {text}, audio {state('raw_audio')}"
