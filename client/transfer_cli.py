"""`corrigo labels import` and `corrigo import`: their arguments, registered in one
place (the machinery is in `labellings` and `dataset_import`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from corrigo.client import dataset_import, labellings
from corrigo.client.cli_support import (
    Commands,
    add_connection,
    add_named,
    connect,
    shows_progress,
)


def add_commands(commands: Commands) -> None:
    """`corrigo import` (`labels import` joins the `labels` group: `add_labels_import`)."""
    _add_import(commands)


def _labels_import(args: argparse.Namespace) -> int:
    owner, name = args.dataset
    with connect(args) as client:
        totals = labellings.import_file(
            client.datasets,
            owner,
            name,
            Path(args.file),
            chunk_size=args.chunk_size,
            progress=shows_progress(args),
        )
    print(f"{totals.updated} labellings set in {totals.chunks} chunks", file=sys.stderr)
    return 0


def add_labels_import(labels: Commands) -> None:
    """`corrigo labels import`, in the `labels` group."""
    load = labels.add_parser(
        "import", help="set labellings from JSONL (resumes after the server goes away)"
    )
    add_named(load, "dataset")
    load.add_argument(
        "file",
        help="JSONL: {comment_uid, assigned, dismissed} per line, or `corrigo export` lines",
    )
    load.add_argument(
        "--chunk-size",
        type=int,
        default=labellings.DEFAULT_CHUNK,
        help="labellings per chunk (one transaction), 1..4096 (default %(default)s)",
    )
    load.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_connection(load)
    load.set_defaults(run=_labels_import)


def _import(args: argparse.Namespace) -> int:
    owner, name = args.dataset
    with connect(args) as client:
        totals = dataset_import.import_file(
            client,
            owner,
            name,
            Path(args.file),
            model_version=args.model_version,
            new_model=args.new_model or "",
            source_prefix=args.source_prefix,
            progress=shows_progress(args),
        )
    print(
        f"{totals.comments} comments into {len(totals.sources)} sources, "
        f"{totals.labellings} labellings, {totals.predictions} predictions",
        file=sys.stderr,
    )
    if totals.skipped_predictions:
        print(
            f"{totals.skipped_predictions} comments' predictions skipped: "
            "name a model version (--model-version N or --new-model NAME)",
            file=sys.stderr,
        )
    return 0


def _add_import(commands: Commands) -> None:
    load = commands.add_parser(
        "import",
        help="load an export file (JSONL or Parquet) into a dataset: comments, labels, predictions",
    )
    add_named(load, "dataset")
    load.add_argument("file", help="`corrigo export` JSONL or .parquet, or CM export JSON lines")
    version = load.add_mutually_exclusive_group()
    version.add_argument(
        "--model-version", type=int, default=0, help="put the predictions into this version"
    )
    version.add_argument(
        "--new-model", help="put the predictions into a new model of this name (its version 1)"
    )
    load.add_argument(
        "--source-prefix",
        default="imported-",
        help="target sources are named PREFIX + the original source id (default %(default)s)",
    )
    load.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_connection(load)
    load.set_defaults(run=_import)
