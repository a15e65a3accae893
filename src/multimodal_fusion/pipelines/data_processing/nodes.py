"""Split the joined contacts into train/val/test and account for every raw
record and id. Validating, cleaning and joining the raw records (the nodes
before these) is :mod:`multimodal_fusion.intake`, shared with inference.

Every raw id ends in exactly one place: a split, the unlabeled set, or the
rejected set; :func:`summarise_data` checks that the counts add up.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from multimodal_fusion.errors import UserInputError
from multimodal_fusion.intake import (
    LISTED,
    SPLITS,
    as_table,
    listing,
    quote,
    raw_record_ids,
)

logger = logging.getLogger(__name__)

OUTCOMES = (*SPLITS, "unlabeled", "rejected")
SOURCES = ("raw_texts", "raw_labels", "raw_audio")


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

    Raises:
        ValueError: when a split is empty, the training split has fewer than two
            classes, or a class has no training contact.
    """
    contacts = contacts.copy()
    labeled = contacts["label"] != ""
    contacts.loc[~labeled, "split"] = "unlabeled"
    if params.get("test_ids_matching"):
        pattern = re.compile(params["test_ids_matching"])
        matches = contacts["id"].map(lambda i: bool(pattern.search(i)))
        if not (labeled & matches).any():
            raise UserInputError(
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
        try:
            held = _holdout(pool, share, seed, group)
        except ValueError as error:  # scikit-learn: too few rows per class
            raise UserInputError(
                f"Cannot hold out a {split} split of {share:.0%} from "
                f"{len(pool)} labelled contacts of {pool['label'].nunique()} "
                f"classes ({error}). Add labelled contacts, change test_size/"
                "val_size in parameters_data_processing.yml, or assign the splits "
                "with a split column in the labels."
            ) from error
        contacts.loc[contacts["id"].isin(held), "split"] = split
    contacts.loc[labeled & (contacts["split"] == ""), "split"] = "train"
    _check_splits(contacts)
    return contacts


def _check_splits(contacts: pd.DataFrame) -> None:
    counts = contacts["split"].value_counts()
    empty = [s for s in SPLITS if counts.get(s, 0) == 0]
    if empty:
        raise UserInputError(
            f"The split(s) {empty} are empty ({counts.to_dict()}). Provide more "
            "labeled contacts or adjust test_size/val_size in "
            "parameters_data_processing.yml."
        )
    train = set(contacts.loc[contacts["split"] == "train", "label"])
    if len(train) < 2:
        raise UserInputError(
            f"The training split holds {len(train)} class(es); at least 2 are "
            "needed to train a classifier. Check raw_labels."
        )
    evaluated = contacts[contacts["split"].isin(("val", "test"))]
    untrained = sorted(set(evaluated["label"]) - train)
    if untrained:
        raise UserInputError(
            f"{len(untrained)} class(es) have contacts in val/test but none in "
            f"train: {listing([quote(c) for c in untrained])}. A model cannot "
            "learn them: move some of their contacts to train (the split column "
            "or test_ids_matching) or remove their labels."
        )
    missing = sorted(train - set(contacts.loc[contacts["split"] == "test", "label"]))
    if missing:
        logger.warning(
            "%d class(es) have no test contact and go unevaluated: %s",
            len(missing),
            ", ".join(quote(c) for c in missing[:LISTED]),
        )


def summarise_data(  # noqa: PLR0913, PLR0917
    raw_texts: pd.DataFrame,
    raw_audio: Mapping[str, Any],
    raw_labels: pd.DataFrame,
    texts: pd.DataFrame,
    audio_index: pd.DataFrame,
    labels: pd.DataFrame,
    contacts: pd.DataFrame,
    rejected: pd.DataFrame,
) -> dict[str, Any]:
    """Accounts for every raw record and every raw id.

    Returns:
        ``records``: per raw dataset, ``total`` = ``accepted`` + the rejected
        records by reason. ``raw_ids`` (distinct non-empty ids) =
        ``sum(outcome)``; ``rejected_ids`` breaks ``outcome["rejected"]`` down by
        reason. Also per-modality counts, class balance per split and measures
        of the kept audio; ``rejected_records`` lists ``{source, reason,
        count}`` for the run summary.

    Raises:
        ValueError: if the counts do not add up (a bug: a record or an id was
            lost or counted twice).
    """
    raw_texts = as_table(raw_texts, ["id", "text"])
    raw_labels = as_table(raw_labels, ["id", "label"])
    accepted = {
        "raw_texts": (len(raw_texts), len(texts)),
        "raw_labels": (len(raw_labels), len(labels)),
        "raw_audio": (len(raw_audio), len(audio_index)),
    }
    records = {}
    for source, (total, kept) in accepted.items():
        reasons = Counter(rejected.loc[rejected["source"] == source, "reason"])
        records[source] = {
            "total": total,
            "accepted": kept,
            "rejected": dict(sorted(reasons.items())),
        }
        if kept + sum(reasons.values()) != total:
            raise ValueError(
                f"Accounting error in {source}: {total} records, {kept} accepted "
                f"and {sum(reasons.values())} rejected"
            )
    verdicts = rejected[rejected["source"] == "contact"]
    raw_ids = raw_record_ids(raw_texts, raw_labels, audio_index, rejected)
    placed = set(contacts["id"]) | set(verdicts["id"])
    if raw_ids - placed or placed - raw_ids or not verdicts["id"].is_unique:
        raise ValueError(
            f"Accounting error: {len(raw_ids - placed)} raw ids are unaccounted for "
            f"and {len(placed - raw_ids)} ids appeared from nowhere"
        )
    outcome = contacts["split"].value_counts().to_dict()
    outcome["rejected"] = len(verdicts)
    kept = contacts[contacts["split"].isin(SPLITS)]
    return {
        "raw_ids": len(raw_ids),
        "outcome": {k: int(outcome.get(k, 0)) for k in OUTCOMES},
        "rejected_ids": dict(sorted(Counter(verdicts["reason"]).items())),
        "records": records,
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
        "audio": _audio_measures(audio_index),
        # Every rejected row by source and reason, for the run summary.
        "rejected_records": rejected.groupby(["source", "reason"])
        .size()
        .rename("count")
        .reset_index()
        .to_dict(orient="records"),
    }


def _audio_measures(audio_index: pd.DataFrame) -> dict[str, Any]:
    if audio_index.empty:
        return {"clips": 0}
    durations = audio_index["duration_s"].astype(float)
    return {
        "clips": len(audio_index),
        "duration_s": {
            "min": round(float(durations.min()), 3),
            "median": round(float(durations.median()), 3),
            "max": round(float(durations.max()), 3),
            "total": round(float(durations.sum()), 1),
        },
        "sample_rates": {
            str(k): int(v)
            for k, v in audio_index["source_rate"].value_counts().sort_index().items()
        },
        "multichannel": int((audio_index["channels"] > 1).sum()),
        "with_clipping": int((audio_index["clipped_share"] > 0).sum()),
    }
