"""The data report and the prepared data set that later stages read.

The data-preparation stage writes ``train.jsonl``, ``dev.jsonl``, ``test.jsonl``,
``labels.json`` and ``report.json`` into the run directory; every later stage
reads them back with ``read_prepared``, so these files are the contract between
stages.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mangakd.data import (
    MAX_LISTED,
    SPLIT_NAMES,
    DataError,
    Example,
    Splits,
    read_examples,
    validate_splits,
    write_text_atomic,
)
from mangakd.labels import LabelMap

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- report


def data_report(splits: Splits) -> dict[str, Any]:
    """Summarise the splits and find duplicated and leaked texts.

    Duplicates are exact repeats of a text within one split. Overlap counts the
    dev or test examples whose text also occurs in train after lower-casing and
    collapsing whitespace, which inflates the measured accuracy. Both are
    reported rather than rejected, because public data sets contain some, and
    each non-zero count is logged as a warning.

    Returns
    -------
    dict
        JSON-serialisable: ``examples`` and ``classes`` per split,
        ``num_classes``, ``train_examples_per_class`` (``min``, ``max`` and a
        label that has each), ``duplicates`` per split and ``overlap`` for
        ``train_dev`` and ``train_test``. Each duplicate or overlap entry has a
        ``count`` and up to ``MAX_LISTED`` ``examples``.
    """
    train_counts = Counter(splits.labels("train"))
    smallest = min(sorted(train_counts), key=lambda label: train_counts[label])
    largest = max(sorted(train_counts), key=lambda label: train_counts[label])
    report: dict[str, Any] = {
        "examples": {split: len(splits.get(split)) for split in SPLIT_NAMES},
        "classes": {split: len(set(splits.labels(split))) for split in SPLIT_NAMES},
        "num_classes": len(train_counts),
        "train_examples_per_class": {
            "min": train_counts[smallest],
            "min_label": smallest,
            "max": train_counts[largest],
            "max_label": largest,
        },
        "duplicates": {split: _duplicates(splits.get(split)) for split in SPLIT_NAMES},
        "overlap": {
            "train_dev": _overlap(splits.train, splits.dev),
            "train_test": _overlap(splits.train, splits.test),
        },
    }

    for split, found in report["duplicates"].items():
        if found["count"]:
            logger.warning(
                "%s split: %d example(s) repeat an earlier text exactly (%d with a different label), e.g. %r",
                split, found["count"], found["conflicting_labels"], found["examples"][0]["text"],
            )
    for pair, found in report["overlap"].items():
        if found["count"]:
            logger.warning(
                "%s: %d %s example(s) also occur in train (ignoring case and whitespace), e.g. %r. "
                "Their scores overstate accuracy on unseen text",
                pair, found["count"], pair.split("_")[1], found["examples"][0]["text"],
            )
    return report


def _location(example: Example) -> str:
    return f"{example.source}:{example.line}"


def _duplicates(examples: Sequence[Example]) -> dict[str, Any]:
    """Count the examples whose exact text occurred earlier in the same split."""
    by_text: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_text[example.text].append(example)
    repeated = [group for group in by_text.values() if len(group) > 1]
    return {
        "count": sum(len(group) - 1 for group in repeated),
        "distinct_texts": len(repeated),
        "conflicting_labels": sum(1 for group in repeated if len({example.label for example in group}) > 1),
        "examples": [
            {
                "text": group[0].text,
                "labels": sorted({example.label for example in group}),
                "locations": [_location(example) for example in group[:MAX_LISTED]],
            }
            for group in repeated[:MAX_LISTED]
        ],
    }


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def _overlap(train: Sequence[Example], other: Sequence[Example]) -> dict[str, Any]:
    """Count the examples of ``other`` whose normalised text also occurs in ``train``."""
    first_in_train: dict[str, Example] = {}
    for example in train:
        first_in_train.setdefault(_normalise(example.text), example)
    leaked = [(example, first_in_train[key]) for example in other if (key := _normalise(example.text)) in first_in_train]
    return {
        "count": len(leaked),
        "examples": [
            {"text": example.text, "location": _location(example), "train_location": _location(match)}
            for example, match in leaked[:MAX_LISTED]
        ],
    }


# ---------------------------------------------------------------- prepared data


PREPARED_SPLIT_FILES = {split: f"{split}.jsonl" for split in SPLIT_NAMES}
LABELS_FILE = "labels.json"
REPORT_FILE = "report.json"


def write_prepared(directory: str | Path, splits: Splits, label_map: LabelMap, report: dict[str, Any]) -> None:
    """Write the splits, label map and report to ``directory`` for the later stages.

    Writes ``train.jsonl``, ``dev.jsonl`` and ``test.jsonl`` (one
    ``{"text": ..., "label": ...}`` object per line), ``labels.json`` and
    ``report.json``, each atomically. ``report.json`` is removed first and
    written last, so its presence means the other files are complete and from
    the same write. ``read_prepared`` relies on that.

    Raises
    ------
    DataError
        If an example's label is not in ``label_map``.
    TypeError, ValueError
        If ``report`` is not JSON-serialisable (ValueError for NaN or infinity).
    """
    directory = Path(directory)
    known = set(label_map.names)
    contents = {}
    for split in SPLIT_NAMES:
        lines = []
        for example in splits.get(split):
            if example.label not in known:
                raise DataError(
                    f"{_location(example)}: label {example.label!r} is not in the label map. "
                    "Build the label map from the train split these examples belong to"
                )
            lines.append(json.dumps({"text": example.text, "label": example.label}, ensure_ascii=False) + "\n")
        contents[PREPARED_SPLIT_FILES[split]] = "".join(lines)
    contents[LABELS_FILE] = label_map.to_json()
    # Serialise the report before anything is written, so a bad report leaves the directory as it was.
    report_text = json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n"

    directory.mkdir(parents=True, exist_ok=True)
    (directory / REPORT_FILE).unlink(missing_ok=True)
    for name, text in contents.items():
        write_text_atomic(directory / name, text)
    write_text_atomic(directory / REPORT_FILE, report_text)


def read_prepared(directory: str | Path) -> tuple[Splits, LabelMap]:
    """Read the splits and label map that ``write_prepared`` wrote to ``directory``.

    Raises
    ------
    DataError
        If a file is missing (the data-preparation stage has not finished), or
        the data disagrees with the label map.
    """
    directory = Path(directory)
    for name in [*PREPARED_SPLIT_FILES.values(), LABELS_FILE, REPORT_FILE]:
        if not (directory / name).is_file():
            raise DataError(
                f"{directory / name}: file not found, so the prepared data in {directory} is missing or "
                "was cut off mid-write. Run the data-preparation stage (`mangakd prepare`) again"
            )

    label_map = LabelMap.load(directory / LABELS_FILE)
    splits = Splits()
    for split, name in PREPARED_SPLIT_FILES.items():
        examples = read_examples(directory / name, file_format="jsonl")
        for example in examples:
            if example.label not in label_map.label2id:
                raise DataError(
                    f"{_location(example)}: label {example.label!r} is not in {directory / LABELS_FILE}. "
                    "The files come from different runs, so run the data-preparation stage (`mangakd prepare`) again"
                )
        setattr(splits, split, examples)
    validate_splits(splits)
    return splits, label_map


def read_report(directory: str | Path) -> dict[str, Any]:
    """Read the data report that ``write_prepared`` wrote to ``directory``."""
    path = Path(directory) / REPORT_FILE
    if not path.is_file():
        raise DataError(f"{path}: file not found. Run the data-preparation stage (`mangakd prepare`) first")
    report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return report
