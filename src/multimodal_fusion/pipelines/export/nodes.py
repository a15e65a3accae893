"""Nodes of the export pipeline: the package's networks pruned and exported,
each format measured on the test split, and the table as an HTML page."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from multimodal_fusion import report_html as H
from multimodal_fusion.alignment import align_inputs
from multimodal_fusion.exports import (
    MANIFEST,
    canonical,
    export_files,
    family,
    file_sizes,
    keras_bytes,
    kernel_sparsity,
    load_runtimes,
    manifest,
    networks,
    p50_latency_ms,
    prune,
    pruned_format,
    read_manifest,
    use_runtimes,
)
from multimodal_fusion.fusion import Classifier
from multimodal_fusion.intake import SPLITS
from multimodal_fusion.package import ModelPackage

LOGGER = logging.getLogger(__name__)


def export_inputs(
    package: ModelPackage, model_inputs: dict[str, Any]
) -> dict[str, Any]:
    """The train, validation and test splits as the package's model reads
    them (projected by its alignment, if it has one)."""
    splits = {split: model_inputs[split] for split in SPLITS}
    if package.alignment is not None:
        return align_inputs(splits, package.alignment)
    return splits


def prune_model(
    package: ModelPackage, inputs: dict[str, Any], params: dict[str, Any]
) -> dict[str, Classifier]:
    """Per sparsity (``pruned_<percent>``), the package's model with every
    kernel magnitude-pruned and fine-tuned ``fine_tune_epochs`` epochs on the
    training split."""
    train = inputs["train"]
    return {
        pruned_format(sparsity): prune(
            package.model,
            train["inputs"],
            train["y"],
            sparsity,
            params["fine_tune_epochs"],
        )
        for sparsity in params["sparsities"]
    }


def export_model(
    package: ModelPackage, pruned_models: dict[str, Classifier], params: dict[str, Any]
) -> dict[str, bytes]:
    """The export folder's files: every LiteRT and ONNX format of
    ``formats`` and the pruned networks, and their manifest."""
    files: dict[str, bytes] = {}
    for fmt in map(canonical, params["formats"]):
        if family(fmt) in ("litert", "onnx"):
            files.update(export_files(package.model, fmt))
    sparsity = {}
    for fmt, pruned in pruned_models.items():
        files.update(export_files(pruned, fmt))
        sparsity[fmt] = _sparsity(pruned)
    described = manifest(files, package.version, package.variant, sparsity)
    files[MANIFEST] = json.dumps(described, indent=2).encode()
    return files


def _sparsity(classifier: Classifier) -> float:
    """The share of zero kernel weights over all the classifier's networks."""
    shares = [kernel_sparsity(n.model_) for n in networks(classifier).values()]
    return float(np.mean(shares))


def evaluate_exports(
    package: ModelPackage,
    model_exports: Mapping[str, bytes],
    inputs: dict[str, Any],
    params: dict[str, Any],
) -> dict[str, Any]:
    """Per format (``keras`` first): test accuracy and macro-F1, agreement of
    its labels with the Keras (fp32) model's, median latency of one contact
    through the networks (``latency_contacts`` contacts, model only: prepared
    inputs in, probabilities out), size on disk and gzip size."""
    test = inputs["test"]
    exported = read_manifest(model_exports)["exports"]
    classes = package.model.classes_
    reference = None
    rows = []
    for fmt in ["keras", *[f for f in _order(params) if f in exported]]:
        if fmt == "keras":
            model = package.model
            sizes = _keras_sizes(model)
        else:
            runtimes = load_runtimes(model_exports, fmt, package.version)
            model = use_runtimes(package.model, runtimes)
            sizes = {k: exported[fmt][k] for k in ("size_bytes", "gzip_bytes")}
        predicted = classes[model.predict_proba(test["inputs"]).argmax(axis=1)]
        reference = predicted if reference is None else reference
        rows.append(
            {
                "format": fmt,
                "accuracy": float(accuracy_score(test["y"], predicted)),
                "macro_f1": float(f1_score(test["y"], predicted, average="macro")),
                "agreement": float(np.mean(predicted == reference)),
                "p50_ms": p50_latency_ms(
                    model, test["inputs"], params["latency_contacts"]
                ),
                **sizes,
                "sparsity": exported.get(fmt, {}).get("sparsity"),
            }
        )
        row = rows[-1]
        LOGGER.info(
            "%s: %s, accuracy %.3f, %.1f %% same labels as keras, %.2f ms",
            fmt,
            H.human(row["gzip_bytes" if row["sparsity"] else "size_bytes"], "bytes"),
            row["accuracy"],
            100 * row["agreement"],
            row["p50_ms"],
        )
    return {
        "package_version": package.version,
        "variant": package.variant,
        "test_rows": len(test["y"]),
        "latency_contacts": params["latency_contacts"],
        "formats": rows,
    }


def _order(params: dict[str, Any]) -> list[str]:
    """The exported formats in the parameters' order, pruned ones last."""
    formats = [canonical(f) for f in params["formats"] if canonical(f) != "keras"]
    return formats + [pruned_format(s) for s in params["sparsities"]]


def _keras_sizes(model: Classifier) -> dict[str, int]:
    """Size and gzip size of the classifier's ``.keras`` networks."""
    return file_sizes([keras_bytes(n.model_) for n in networks(model).values()])


def render_export_report(export_metrics: dict[str, Any]) -> str:
    """The export table as a self-contained HTML page (the report's style)."""
    header = (
        "Format",
        "Size on disk",
        "gzip size",
        "Test accuracy",
        "Macro-F1",
        "Agreement with fp32",
        "p50 ms / contact",
        "Kernel sparsity",
    )
    rows = [
        (
            row["format"],
            H.human(row["size_bytes"], "bytes"),
            H.human(row["gzip_bytes"], "bytes"),
            row["accuracy"],
            row["macro_f1"],
            H.human(row["agreement"], "percent"),
            H.Num(f"{row['p50_ms']:.3g}"),
            H.human(row["sparsity"], "percent"),
        )
        for row in export_metrics["formats"]
    ]
    lead = H.paragraph(
        f"Package {export_metrics['package_version']} "
        f"({export_metrics['variant']}), {export_metrics['test_rows']} test "
        "contacts. Agreement: share of test contacts given the label the Keras "
        "(fp32) model gives. Latency: median over "
        f"{export_metrics['latency_contacts']} contacts of one contact's "
        "prepared inputs through the network(s), model only (no featurisation)."
    )
    return H.page(
        "multimodal-fusion exports",
        [("formats", "Formats", H.table(rows, header))],
        lead,
        plotly_js=False,
    )
