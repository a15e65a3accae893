"""The floor under every fusion variant: a fused model never answers worse than
the unimodal model of the modalities a row has, as far as validation can tell.

A fused network can lose to a single modality: when the other modality carries
nothing about the label (it only adds noise), or when a row lacks a modality
the network leans on. :class:`RoutedClassifier` wraps the fused model with the
trained unimodal models (``text_only``, ``audio_only``) and sends each row, by
the modalities it has (its *pattern*: text and audio, text only, audio only),
to whichever of them scored the higher macro-F1 on the validation rows of that
pattern (rows of a richer pattern with the other modality blanked count too):
the fused network keeps a pattern's rows only when it answers more of them right
than the best unimodal model by more than one standard error of the paired
difference (:func:`clearly_better`). The routes are learned attributes, shown
on the console and in ``metrics``.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from sklearn.metrics import f1_score

from multimodal_fusion.alignment import Alignment, project
from multimodal_fusion.fusion import (
    MODALITY_INPUTS,
    Classifier,
    FusionClassifier,
    blank_modality,
    nonzero_rows,
    validation_macro_f1,
)
from multimodal_fusion.persistence import Stateful

FUSED = "fused"
# How many standard errors the fused network must win by on a pattern's
# validation rows to keep them: a small validation split cannot tell a fused
# network from the unimodal model it barely beats, and the floor errs towards
# the simpler model.
MARGIN_SE = 1.0


def pattern_name(modalities: tuple[str, ...] | list[str]) -> str:
    """``text+audio``, ``text`` or ``audio``: the key of a presence pattern."""
    return "+".join(modalities)


def modality_flags(
    inputs: dict[str, Any], modalities: list[str]
) -> dict[str, np.ndarray]:
    """Per modality, booleans: which rows have it (any of its inputs non-zero)."""
    return {
        m: np.logical_or.reduce(
            [nonzero_rows(inputs[n]) for n in MODALITY_INPUTS[m] if n in inputs]
        )
        for m in modalities
    }


def patterns(modalities: list[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset of ``modalities``, the largest first."""
    return [
        kept
        for size in range(len(modalities), 0, -1)
        for kept in itertools.combinations(modalities, size)
    ]


def clearly_better(candidate: np.ndarray, baseline: np.ndarray, y: np.ndarray) -> bool:
    """Whether ``candidate``'s answers beat ``baseline``'s on the same rows by
    more than :data:`MARGIN_SE` standard errors of the paired difference (the
    rows only one of them gets right, as in McNemar's test)."""
    wins = int(np.sum((candidate == y) & (baseline != y)))
    losses = int(np.sum((candidate != y) & (baseline == y)))
    return wins - losses > MARGIN_SE * np.sqrt(wins + losses)


def _take(inputs: dict[str, Any], rows: np.ndarray) -> dict[str, Any]:
    return {name: matrix[rows] for name, matrix in inputs.items()}


class RoutedClassifier(Stateful):
    """A fused classifier (any variant of several modalities, reading the
    model inputs or, with ``alignment_``, their projection into a common space)
    with the trained unimodal classifiers as fallbacks, routed per presence
    pattern on validation (see the module's docstring).

    Args:
        fallback: Whether rows may be routed to the unimodal models; false keeps
            every row on the fused model (the network as trained).
    """

    def __init__(self, *, fallback: bool = True) -> None:
        self.fallback = fallback

    @classmethod
    def of_trained(
        cls,
        fused: Classifier,
        unimodal: dict[str, FusionClassifier],
        validation: tuple[dict, Any],
        *,
        alignment: Alignment | None = None,
        fallback: bool = True,
    ) -> RoutedClassifier:
        """Wraps ``fused`` (trained on ``alignment``'s common space when given)
        with the trained ``unimodal`` classifiers (modality → model) and learns
        the routes on ``validation`` (model inputs, not projected)."""
        model = cls(fallback=fallback)
        model.fused_ = fused
        model.alignment_ = alignment
        model.skipped_reason_ = fused.skipped_reason_
        model.fallbacks_ = {}
        model.routes_ = {}
        model.route_scores_ = {}
        if model.skipped_reason_:
            return model
        model.fallbacks_ = {
            m: c
            for m, c in unimodal.items()
            if not c.skipped_reason_
            and m in fused.modalities_
            and np.array_equal(c.classes_, fused.classes_)
        }
        model._fit_routes(validation)
        # Only the fallbacks some pattern goes to are kept (and packaged).
        model.fallbacks_ = {
            m: c for m, c in model.fallbacks_.items() if m in model.routes_.values()
        }
        model.val_macro_f1_ = validation_macro_f1(model, validation)
        return model

    # What the evaluation, the console and the package read of a variant's model
    # is the fused model's.
    modalities = property(lambda self: self.fused_.modalities)
    modalities_ = property(lambda self: self.fused_.modalities_)
    classes_ = property(lambda self: self.fused_.classes_)
    seed = property(lambda self: self.fused_.seed)
    n_train_rows_ = property(lambda self: self.fused_.n_train_rows_)
    epochs_ = property(lambda self: self.fused_.epochs_)
    train_seconds_ = property(lambda self: self.fused_.train_seconds_)
    n_params_ = property(
        lambda self: (
            self.fused_.n_params_ + sum(c.n_params_ for c in self.fallbacks_.values())
        )
    )

    def _fit_routes(self, validation: tuple[dict, Any]) -> None:
        val_inputs, val_y = validation
        val_y = np.asarray(val_y)
        modalities = list(self.fused_.modalities_)
        has = modality_flags(val_inputs, modalities)
        for kept in patterns(modalities):
            name = pattern_name(kept)
            self.routes_[name] = FUSED
            unimodal = (
                [m for m in kept if m in self.fallbacks_] if self.fallback else []
            )
            # Validation rows that have every kept modality, the others blanked.
            rows = np.logical_and.reduce([has[m] for m in kept])
            if not unimodal or not rows.any():
                continue
            inputs = _take(val_inputs, rows)
            for dropped in set(modalities) - set(kept):
                inputs = blank_modality(inputs, dropped)
            predicted = {
                route: self.classes_[self._route_proba(route, inputs).argmax(axis=1)]
                for route in [FUSED, *unimodal]
            }
            scores = {
                route: float(f1_score(val_y[rows], p, average="macro"))
                for route, p in predicted.items()
            }
            self.route_scores_[name] = scores
            best = max(unimodal, key=scores.__getitem__)
            if not clearly_better(predicted[FUSED], predicted[best], val_y[rows]):
                self.routes_[name] = best

    def _route_proba(self, route: str, inputs: dict) -> np.ndarray:
        """The probabilities of the model behind ``route``."""
        if route != FUSED:
            return self.fallbacks_[route].predict_proba(inputs)
        if self.alignment_ is not None:
            has = modality_flags(inputs, ["text", "audio"])
            inputs = project(
                inputs, self.alignment_, has_text=has["text"], has_audio=has["audio"]
            )
        return self.fused_.predict_proba(inputs)

    def predict_proba(self, inputs: dict) -> np.ndarray:
        """Class probabilities, shape ``(n_rows, n_classes)``: each row from the
        model its pattern is routed to (rows with no modality: the fused one)."""
        if self.skipped_reason_:
            raise RuntimeError(f"This model was not trained: {self.skipped_reason_}")
        if set(self.routes_.values()) <= {FUSED}:
            return self._route_proba(FUSED, inputs)
        modalities = list(self.fused_.modalities_)
        has = modality_flags(inputs, modalities)
        routes = np.full(len(has[modalities[0]]), FUSED, dtype=object)
        for kept in patterns(modalities):
            exactly = np.logical_and.reduce(
                [has[m] if m in kept else ~has[m] for m in modalities]
            )
            routes[exactly] = self.routes_.get(pattern_name(kept), FUSED)
        proba = np.zeros((len(routes), len(self.classes_)), np.float32)
        for route in np.unique(routes):
            rows = routes == route
            proba[rows] = self._route_proba(route, _take(inputs, rows))
        return proba

    def predict(self, inputs: dict) -> np.ndarray:
        """Predicted labels."""
        return self.classes_[self.predict_proba(inputs).argmax(axis=1)]


# What a variant's model is: a unimodal classifier, or a routed one.
VariantModel = Classifier | RoutedClassifier


def routes_sentence(routes: dict[str, str], scores: dict[str, dict[str, float]]) -> str:
    """Where a routed model sends its rows (``routes_``, chosen on
    ``route_scores_``), in words: the patterns routed to a unimodal model, with
    the validation macro-F1 that chose it (the console and the report)."""
    moved = {p: r for p, r in routes.items() if r != FUSED}
    if not moved:
        why = " (it beats the unimodal models on validation)" if scores else ""
        return f"every row stays on the fused network{why}"
    return "; ".join(
        f"rows with {pattern.replace('+', ' and ')} go to {route}_only "
        f"(validation macro-F1 {scores[pattern][route]:.3f}, "
        f"fused {scores[pattern][FUSED]:.3f})"
        for pattern, route in moved.items()
    )


def short_routes(routes: dict[str, str]) -> str:
    """The patterns a routed model sends to a unimodal model, in a few words
    (``text → text_only, audio → audio_only``), for the console and the
    summary; '' when every row stays on the fused network."""
    return ", ".join(
        f"{pattern.replace('+', ' and ')} → {route}_only"
        for pattern, route in routes.items()
        if route != FUSED
    )
