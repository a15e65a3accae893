"""Join the three raw datasets by id, validate them, clean text (PII masked),
normalise audio and split into train/val/test.

Every raw id ends in exactly one place: a split, the unlabeled set, or the rejected
set. A bad record of one modality (say an undecodable clip) is listed in
``rejected`` with its reason while its id may live on with the other modality.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from multimodal_fusion.audio import prepare_clip, problem_with
from multimodal_fusion.datasets import AudioClip
from multimodal_fusion.text import clean_text

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
REJECTED_COLUMNS = ["id", "source", "reason"]


def _rejections(ids, source: str, reason: str) -> pd.DataFrame:
    return pd.DataFrame({"id": list(ids), "source": source, "reason": reason})


def _require_columns(frame: pd.DataFrame, columns: list[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{name} lacks the column(s) {missing}; it has {list(frame.columns)}. "
            f"Fix the file behind the '{name}' catalog entry (GUIDE §1)."
        )


def _split_duplicates(frame: pd.DataFrame, source: str):
    """Rows whose id is unique, and a rejection for every row of a repeated id."""
    frame = frame.assign(id=frame["id"].astype(str).str.strip())
    counts = frame["id"].value_counts()
    repeated = frame["id"].map(counts) > 1
    rejected = pd.DataFrame(
        {
            "id": frame.loc[repeated, "id"],
            "source": source,
            "reason": [
                f"duplicate id: {counts[i]} rows in {source}"
                for i in frame.loc[repeated, "id"]
            ],
        }
    )
    blank = frame["id"].isin(["", "nan"])
    empty_ids = pd.DataFrame(
        {
            "id": frame.loc[blank, "id"],
            "source": source,
            "reason": [f"empty id (data row {i + 1})" for i in frame.index[blank]],
        }
    )
    rejected = pd.concat([rejected[~rejected["id"].isin(["", "nan"])], empty_ids])
    return frame[~repeated & ~blank].reset_index(drop=True), rejected


def clean_texts(raw_texts: pd.DataFrame, params: dict[str, Any]):
    """Validates typed messages and cleans them.

    Args:
        raw_texts: Columns ``id,text``; text may be empty.
        params: ``lowercase`` (bool).

    Returns:
        Clean texts ``id,text`` (PII masked; empty text kept as ""), and the
        rejected rows (duplicate or empty ids).
    """
    _require_columns(raw_texts, ["id", "text"], "raw_texts")
    texts, rejected = _split_duplicates(raw_texts[["id", "text"]], "raw_texts")
    texts["text"] = [
        clean_text(str(t), lowercase=params["lowercase"]) if pd.notna(t) else ""
        for t in texts["text"]
    ]
    return texts, rejected.reset_index(drop=True)


def clean_labels(raw_labels: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validates labels; optional columns ``speaker`` and ``split`` are kept.

    Args:
        raw_labels: Columns ``id,label`` and optionally ``speaker``, ``split``.

    Returns:
        Labels ``id,label,speaker,split`` (empty strings where absent; an empty
        label means unlabeled), and the rejected rows.
    """
    _require_columns(raw_labels, ["id", "label"], "raw_labels")
    labels = raw_labels.reindex(columns=["id", "label", "speaker", "split"])
    labels = labels.astype(object).fillna("").astype(str)
    labels = labels.apply(lambda col: col.str.strip())
    labels, rejected = _split_duplicates(labels, "raw_labels")
    labels["split"] = labels["split"].str.lower()
    bad_split = ~labels["split"].isin(("", *SPLITS))
    rejected = pd.concat(
        [
            rejected,
            _rejections(
                labels.loc[bad_split, "id"],
                "raw_labels",
                f"split value is not one of {list(SPLITS)} or empty",
            ),
        ]
    )
    return labels[~bad_split].reset_index(drop=True), rejected.reset_index(drop=True)


def _audio_ids(raw_audio: dict[str, Callable]) -> dict[str, list[str]]:
    ids: dict[str, list[str]] = {}
    for key in sorted(raw_audio):
        ids.setdefault(PurePosixPath(key).stem, []).append(key)
    return ids


def prepare_audio(
    raw_audio: dict[str, Callable[[], AudioClip]], params: dict[str, Any]
) -> tuple[dict[str, AudioClip], pd.DataFrame, pd.DataFrame]:
    """Decodes every clip once and normalises the usable ones.

    Args:
        raw_audio: Partition key (file path relative to the audio folder) → loader.
            The file stem is the contact id.
        params: ``sample_rate``, ``top_db``, ``target_dbfs``, ``max_seconds``.

    Returns:
        Prepared clips keyed by id, an index ``id,source_file,source_rate,
        duration_s,truncated`` of the kept clips, and the rejected files.
    """
    clips: dict[str, AudioClip] = {}
    index, rejected = [], []
    for clip_id, keys in _audio_ids(raw_audio).items():
        if len(keys) > 1:
            reason = f"duplicate id: {len(keys)} audio files ({', '.join(keys)})"
            rejected.append(_rejections([clip_id], "raw_audio", reason))
            continue
        try:
            clip = raw_audio[keys[0]]()
        except Exception as err:  # noqa: BLE001 - any decoder failure is quarantined
            reason = f"undecodable audio file '{keys[0]}': {str(err).splitlines()[-1]}"
            rejected.append(_rejections([clip_id], "raw_audio", reason))
            continue
        problem = problem_with(clip)
        if problem:
            rejected.append(
                _rejections([clip_id], "raw_audio", f"{problem} ({keys[0]})")
            )
            continue
        prepared, truncated = prepare_clip(
            clip,
            sample_rate=params["sample_rate"],
            top_db=params["top_db"],
            target_dbfs=params["target_dbfs"],
            max_seconds=params["max_seconds"],
        )
        clips[clip_id] = prepared
        index.append((clip_id, keys[0], clip.sample_rate, prepared.duration, truncated))
    columns = ["id", "source_file", "source_rate", "duration_s", "truncated"]
    rejected_frame = pd.concat(
        [pd.DataFrame(columns=REJECTED_COLUMNS), *rejected], ignore_index=True
    )
    logger.info("Prepared %d clips, rejected %d files", len(clips), len(rejected_frame))
    return clips, pd.DataFrame(index, columns=columns), rejected_frame


def join_contacts(
    texts: pd.DataFrame,
    audio_index: pd.DataFrame,
    labels: pd.DataFrame,
    *rejected_parts: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Outer-joins texts, clips and labels by id.

    Args:
        texts: Clean texts ``id,text``.
        audio_index: Kept clips, one row per id.
        labels: ``id,label,speaker,split``.
        *rejected_parts: Rejected rows of the earlier steps.

    Returns:
        Contacts with ``has_text`` / ``has_audio`` flags (at least one is true),
        and all rejected records, including ids left with neither modality.
    """
    contacts = (
        texts.merge(audio_index, on="id", how="outer")
        .merge(labels, on="id", how="outer")
        .sort_values("id", kind="stable")
        .reset_index(drop=True)
    )
    contacts["has_text"] = contacts["text"].fillna("").str.len() > 0
    contacts["has_audio"] = contacts["id"].isin(audio_index["id"])
    for column in ("text", "label", "speaker", "split", "source_file"):
        contacts[column] = contacts[column].fillna("").astype(str)
    rejected = pd.concat(
        [pd.DataFrame(columns=REJECTED_COLUMNS), *rejected_parts], ignore_index=True
    )
    rejected_ids = set(rejected["id"])
    no_modality = ~contacts["has_text"] & ~contacts["has_audio"]
    orphan = contacts.loc[no_modality, "id"]
    reasons = [
        "no usable modality: empty text and no audio"
        if i not in rejected_ids
        else "no usable modality left after the rejections above"
        for i in orphan
    ]
    rejected = pd.concat(
        [
            rejected,
            pd.DataFrame({"id": orphan, "source": "contact", "reason": reasons}),
        ],
        ignore_index=True,
    )
    return contacts[~no_modality].reset_index(drop=True), rejected


def _holdout(frame: pd.DataFrame, size: float, seed: int, group_column: str | None):
    """Ids of a stratified (and, with groups, grouped) share ``size`` of frame."""
    if len(frame) < 2 or size <= 0:
        return set()
    labels = frame["label"]
    stratify = labels if labels.value_counts().min() >= 2 else None
    groups = frame[group_column] if group_column else None
    n_folds = max(2, round(1 / size))
    if groups is not None and groups.nunique() >= n_folds and stratify is not None:
        folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        _, held = next(folds.split(frame, labels, groups))
        return set(frame["id"].iloc[held])
    _, held = train_test_split(
        frame["id"], test_size=size, random_state=seed, stratify=stratify
    )
    return set(held)


def split_contacts(
    contacts: pd.DataFrame, params: dict[str, Any], seed: int
) -> pd.DataFrame:
    """Assigns each contact to train, val, test or unlabeled.

    A ``split`` column in the labels is honoured. Ids matching
    ``test_ids_matching`` (a regex) go to test. Splits still missing are held out
    at random, stratified by label and grouped by ``group_column`` when it is
    given and filled.

    Args:
        contacts: Joined contacts.
        params: ``test_size``, ``val_size``, ``group_column``, ``test_ids_matching``.
        seed: The project seed.

    Returns:
        Contacts with the ``split`` column filled.
    """
    contacts = contacts.copy()
    labeled = contacts["label"] != ""
    contacts.loc[~labeled, "split"] = "unlabeled"
    if params.get("test_ids_matching"):
        pattern = re.compile(params["test_ids_matching"])
        matches = contacts["id"].map(lambda i: bool(pattern.search(i)))
        if not (labeled & matches).any():
            raise ValueError(
                f"test_ids_matching '{pattern.pattern}' matches no labeled id "
                f"(ids look like {contacts['id'].head(3).tolist()}). Fix the pattern "
                "in parameters_data_processing.yml or set it to null."
            )
        contacts.loc[labeled & matches & (contacts["split"] == ""), "split"] = "test"
        contacts.loc[labeled & (contacts["split"] == ""), "split"] = "train"
    group = params.get("group_column")
    if group and (group not in contacts or (contacts.loc[labeled, group] == "").any()):
        logger.warning(
            "Group column '%s' missing or incomplete: splits not grouped", group
        )
        group = None
    for split, size in (("test", params["test_size"]), ("val", params["val_size"])):
        if (contacts["split"] == split).any():
            continue
        pool = contacts[labeled & contacts["split"].isin(("", "train"))]
        share = size / (1 - params["test_size"]) if split == "val" else size
        held = _holdout(pool, share, seed, group)
        contacts.loc[contacts["id"].isin(held), "split"] = split
    contacts.loc[labeled & (contacts["split"] == ""), "split"] = "train"
    _check_splits(contacts)
    return contacts


def _check_splits(contacts: pd.DataFrame) -> None:
    counts = contacts["split"].value_counts()
    empty = [s for s in SPLITS if counts.get(s, 0) == 0]
    if empty:
        raise ValueError(
            f"The split(s) {empty} are empty ({counts.to_dict()}). Provide more "
            "labeled contacts or adjust test_size/val_size in "
            "parameters_data_processing.yml."
        )
    train_classes = contacts.loc[contacts["split"] == "train", "label"].nunique()
    if train_classes < 2:
        raise ValueError(
            f"The training split holds {train_classes} class(es); at least 2 are "
            "needed to train a classifier. Check raw_labels."
        )


def summarise_data(
    raw_texts: pd.DataFrame,
    raw_audio: dict[str, Callable],
    raw_labels: pd.DataFrame,
    contacts: pd.DataFrame,
    rejected: pd.DataFrame,
) -> dict[str, Any]:
    """Accounts for every raw id: kept per split, unlabeled, or rejected.

    Returns:
        Counts that add up to the number of distinct raw ids, per-modality counts,
        class balance per split and rejected records by reason.

    Raises:
        ValueError: if the counts do not add up (a bug: an id was lost).
    """
    raw_ids = (
        set(raw_texts["id"].astype(str).str.strip())
        | set(_audio_ids(raw_audio))
        | set(raw_labels["id"].astype(str).str.strip())
    )
    contact_ids = set(contacts["id"])
    rejected_only = set(rejected["id"]) - contact_ids
    outcome = contacts["split"].value_counts().to_dict()
    outcome["rejected"] = len(rejected_only & raw_ids)
    lost = raw_ids - contact_ids - rejected_only
    if lost or sum(outcome.values()) != len(raw_ids):
        raise ValueError(f"Accounting error: {len(lost)} raw ids are unaccounted for")
    kept = contacts[contacts["split"].isin(SPLITS)]
    return {
        "raw_ids": len(raw_ids),
        "outcome": {
            k: int(outcome.get(k, 0)) for k in (*SPLITS, "unlabeled", "rejected")
        },
        "modalities": {
            "text_and_audio": int((kept["has_text"] & kept["has_audio"]).sum()),
            "text_only": int((kept["has_text"] & ~kept["has_audio"]).sum()),
            "audio_only": int((~kept["has_text"] & kept["has_audio"]).sum()),
        },
        "classes": {
            split: kept.loc[kept["split"] == split, "label"]
            .value_counts()
            .sort_index()
            .astype(int)
            .to_dict()
            for split in SPLITS
        },
        "rejected_records": rejected.groupby(["source", "reason"])
        .size()
        .rename("count")
        .reset_index()
        .to_dict(orient="records"),
    }
