"""``python -m multimodal_fusion`` (or ``multimodal-fusion``): the project's Kedro
commands, plus ``predict``, which scores one contact with a model package, and
``serve``, which serves a package over HTTP (see
:mod:`multimodal_fusion.serving`); neither needs a Kedro project::

    python -m multimodal_fusion predict --package <folder> --text "..." --audio call.wav
    python -m multimodal_fusion serve --package <folder> --port 8000 --format litert
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any


def predict_command(argv: list[str]) -> int:
    """Prints the top labels of one contact with their probabilities."""
    parser = argparse.ArgumentParser(
        prog="python -m multimodal_fusion predict",
        description="Predict the label of one contact with a model package.",
    )
    parser.add_argument(
        "--package",
        required=True,
        type=Path,
        help="the model package folder (data/<env>/06_models/model_package/"
        "<version>/model_package)",
    )
    from multimodal_fusion.serving.cli import add_format_arguments

    add_format_arguments(parser)
    parser.add_argument("--text", help="the typed message")
    parser.add_argument("--audio", type=Path, help="the voice message (audio file)")
    parser.add_argument("--top", type=int, default=3, help="labels to list")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    if args.text is None and args.audio is None:
        parser.error("give --text, --audio or both")

    from multimodal_fusion.package import ModelPackage, PackageError, result_of

    # Only warnings (a rejected record, say) on stderr; the result on stdout.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        package = ModelPackage.load(
            args.package, exports=args.exports, format=args.format
        )
        row = package.predict(
            texts=[args.text], audio=[args.audio], top_k=args.top
        ).iloc[0]
    except (PackageError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = result_of(row)
    print(json.dumps(result, indent=2) if args.json else _text(result))
    return 0 if result["status"] == "predicted" else 1


def _text(result: dict[str, Any]) -> str:
    ignored = [
        f"{name} rejected ({why})" for name, why in result["rejected_inputs"].items()
    ]
    if result["status"] != "predicted":
        return "; ".join([f"rejected: {result['reason']}", *ignored])
    lines = [
        f"{entry['probability']:7.1%}  {entry['label']}" for entry in result["top"]
    ]
    lines.append(
        f"(from {result['modalities']}; {result['variant']}, "
        f"package {result['package_version']})"
    )
    return "\n".join(lines + ignored)


def main(*args, **kwargs) -> Any:
    argv = list(args[0]) if args and isinstance(args[0], list) else sys.argv[1:]
    if argv[:1] == ["predict"]:
        return sys.exit(predict_command(argv[1:]))
    if argv[:1] == ["serve"]:
        from multimodal_fusion.serving.cli import serve_command

        return sys.exit(serve_command(argv[1:]))
    from kedro.framework.cli.utils import find_run_command
    from kedro.framework.project import configure_project

    package_name = Path(__file__).parent.name
    configure_project(package_name)

    interactive = hasattr(sys, "ps1")
    kwargs["standalone_mode"] = not interactive

    run = find_run_command(package_name)
    return run(*args, **kwargs)


if __name__ == "__main__":
    main()
