"""The data API of the pipeline: labelled examples, data files, validation and the label map.

This module reads JSONL, CSV and TSV files, validates train/dev/test splits and
maps labels to class ids. ``mangakd.datasets`` builds the splits from these
parts (built-in sets, carving, subsets); ``mangakd.prepared`` reports on them
and writes the prepared data that later stages read; ``mangakd.labels`` contains
the label map.

Every ``Example`` keeps its source file and 1-based line, so a ``DataError``
can point at the line to fix. Messages take the ``file:line: problem. Fix``
form, which editors and terminals turn into links.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPLIT_NAMES = ("train", "dev", "test")
FILE_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv"}

# How many labels or texts an error message or report lists before "and N more".
MAX_LISTED = 5


class DataError(ValueError):
    """Invalid input data: the message names the file, the line and the fix."""


@dataclass(frozen=True)
class Example:
    """One labelled text and where it came from (file path, 1-based line)."""

    text: str
    label: str
    source: str
    line: int


@dataclass
class Splits:
    """The train, dev and test examples of one data set."""

    train: list[Example] = field(default_factory=list)
    dev: list[Example] = field(default_factory=list)
    test: list[Example] = field(default_factory=list)

    def get(self, split: str) -> list[Example]:
        """Return the examples of ``split`` (``train``, ``dev`` or ``test``)."""
        if split not in SPLIT_NAMES:
            raise ValueError(f"unknown split {split!r}, expected one of {SPLIT_NAMES}")
        examples: list[Example] = getattr(self, split)
        return examples

    def texts(self, split: str) -> list[str]:
        """Return the texts of ``split`` in order."""
        return texts(self.get(split))

    def labels(self, split: str) -> list[str]:
        """Return the labels of ``split`` in order."""
        return labels(self.get(split))


def texts(examples: Iterable[Example]) -> list[str]:
    """Return the texts of ``examples`` in order."""
    return [example.text for example in examples]


def labels(examples: Iterable[Example]) -> list[str]:
    """Return the labels of ``examples`` in order."""
    return [example.label for example in examples]


def _error(source: str | Path, line: int | None, problem: str, fix: str) -> DataError:
    """Build a DataError that starts with ``file:line:`` (or ``file:`` without a line)."""
    location = f"{source}:{line}" if line is not None else f"{source}"
    return DataError(f"{location}: {problem}. {fix}")


# ---------------------------------------------------------------- reading files


def read_examples(
    path: str | Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    file_format: str | None = None,
) -> list[Example]:
    """Read labelled examples from a JSONL, CSV or TSV file.

    JSONL contains one JSON object per line. CSV and TSV start with a header line
    and follow the quoting rules of Python's ``csv`` module (which pandas also
    writes): a field that contains the delimiter, a double quote or a line break
    is enclosed in double quotes, and inner quotes are doubled. Blank lines are
    skipped. Labels are stripped of surrounding whitespace, and texts are kept
    as they are.

    Parameters
    ----------
    path : str or Path
        File to read. It must be UTF-8 (a byte-order mark is allowed).
    text_column, label_column : str
        Names of the text and label columns (JSON keys for JSONL).
    file_format : {"jsonl", "csv", "tsv"}, optional
        Overrides the format implied by the extension (``.jsonl``, ``.ndjson``,
        ``.csv``, ``.tsv``).

    Returns
    -------
    list[Example]
        The examples in file order. ``line`` is the line on which each example
        starts.

    Raises
    ------
    DataError
        If the file is missing, empty, not UTF-8, malformed, lacks a column,
        or has an empty text or label.
    """
    path = Path(path)
    file_format = _resolve_format(path, file_format)
    content = _read_utf8(path)

    if not content.strip():
        raise _error(path, None, "file is empty", _format_hint(file_format, text_column, label_column))

    if file_format == "jsonl":
        examples = _parse_jsonl(path, content, text_column, label_column)
    else:
        delimiter = "," if file_format == "csv" else "\t"
        examples = _parse_delimited(path, content, delimiter, text_column, label_column)

    if not examples:
        raise _error(path, None, "file contains no examples", _format_hint(file_format, text_column, label_column))
    return examples


def _resolve_format(path: Path, file_format: str | None) -> str:
    if file_format is not None:
        if file_format not in set(FILE_FORMATS.values()):
            raise DataError(f"unknown file format {file_format!r}. Use one of: jsonl, csv, tsv")
        return file_format
    suffix = path.suffix.lower()
    if suffix not in FILE_FORMATS:
        raise _error(
            path, None, f"cannot tell the file format from the extension {suffix!r}",
            "Rename the file to end in .jsonl, .csv or .tsv",
        )
    return FILE_FORMATS[suffix]


def _format_hint(file_format: str, text_column: str, label_column: str) -> str:
    if file_format == "jsonl":
        example = json.dumps({text_column: "book a flight to Oslo", label_column: "book_flight"})
        return f"Write one JSON object per line, such as {example}"
    delimiter = "," if file_format == "csv" else "<TAB>"
    return f"Start with the header line {text_column}{delimiter}{label_column}, then one example per line"


def _read_utf8(path: Path) -> str:
    """Read a whole file as UTF-8, dropping a byte-order mark if there is one."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _error(path, None, "file not found", "Check the path") from None
    except IsADirectoryError:
        raise _error(path, None, "is a directory, not a file", "Give the path of a JSONL, CSV or TSV file") from None

    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        bad = raw[error.start : error.end].hex(" ")
        raise _error(
            path, line, f"file is not valid UTF-8: byte(s) {bad} at byte offset {error.start}",
            "Save the file as UTF-8, for example `iconv -f latin1 -t utf-8 OLD > NEW` "
            "when it was written as Latin-1",
        ) from None


def _parse_jsonl(path: Path, content: str, text_column: str, label_column: str) -> list[Example]:
    examples = []
    # split("\n") rather than splitlines(): JSON strings may contain other
    # Unicode line separators, and line numbers must match what editors show.
    for line_number, line in enumerate(content.split("\n"), start=1):
        if not line.strip():
            continue

        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise _error(
                path, line_number, f"invalid JSON ({error.msg} at column {error.colno})",
                _format_hint("jsonl", text_column, label_column),
            ) from None
        if not isinstance(record, dict):
            raise _error(
                path, line_number, f"expected a JSON object, found {type(record).__name__}",
                _format_hint("jsonl", text_column, label_column),
            )

        for column in (text_column, label_column):
            if column not in record:
                raise _missing_column(path, line_number, column, list(record))
        examples.append(_make_example(path, line_number, record[text_column], record[label_column]))
    return examples


def _parse_delimited(
    path: Path, content: str, delimiter: str, text_column: str, label_column: str
) -> list[Example]:
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
        for column in (text_column, label_column):
            if column not in header:
                raise _missing_column(path, 1, column, header)
        text_index = header.index(text_column)
        label_index = header.index(label_column)

        examples = []
        while True:
            # A quoted field may span lines, so an example starts on the line
            # after the last one the reader has consumed.
            start_line = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                raise _error(
                    path, start_line, f"expected {len(header)} fields as in the header, found {len(row)}",
                    "Check for an unclosed double quote or a missing delimiter, and enclose "
                    "fields that contain the delimiter in double quotes",
                )
            examples.append(_make_example(path, start_line, row[text_index], row[label_index]))
    except csv.Error as error:
        raise _error(path, reader.line_num, f"invalid {'CSV' if delimiter == ',' else 'TSV'} ({error})",
                     "Fix the quoting on this line") from None
    return examples


def _missing_column(path: Path, line: int, column: str, present: Sequence[str]) -> DataError:
    columns = ", ".join(repr(name) for name in present) or "none"
    return _error(
        path, line, f"column {column!r} not found. The columns are: {columns}",
        "Rename the column in the file, or set text_column/label_column to the right name",
    )


def _make_example(path: Path, line: int, text: Any, label: Any) -> Example:
    if text is None or (isinstance(text, str) and not text.strip()):
        raise _error(path, line, "text is empty or only whitespace", "Write the text, or delete this example")
    if not isinstance(text, str):
        raise _error(path, line, f"text must be a string, found {text!r}", "Quote the text as a JSON string")

    # A JSONL file may store labels as integers, which become their decimal
    # string. A bool is a subclass of int but is rejected as a likely mistake.
    if isinstance(label, int) and not isinstance(label, bool):
        label = str(label)
    if label is None or (isinstance(label, str) and not label.strip()):
        raise _error(path, line, "label is empty", "Write the label, or delete this example")
    if not isinstance(label, str):
        raise _error(path, line, f"label must be a string or an integer, found {label!r}", "Write the label as a string")
    return Example(text=text, label=label.strip(), source=str(path), line=line)


# ---------------------------------------------------------------- validation


def validate_splits(splits: Splits) -> None:
    """Raise DataError unless the splits can train and evaluate a classifier.

    Checks that every split has examples, that every text and label is
    non-empty, that train has at least 2 classes, and that dev and test use
    only labels seen in train. The error names the file and line to fix.
    """
    for split in SPLIT_NAMES:
        examples = splits.get(split)
        if not examples:
            raise DataError(f"the {split} split has no examples. Give a {split} file, or a fraction to carve from train")
        for example in examples:
            if not example.text.strip():
                raise _error(example.source, example.line, "text is empty or only whitespace",
                             "Write the text, or delete this example")
            if not example.label.strip():
                raise _error(example.source, example.line, "label is empty", "Write the label, or delete this example")

    train_labels = set(splits.labels("train"))
    if len(train_labels) < 2:
        sources = ", ".join(sorted({example.source for example in splits.train}))
        found = ", ".join(repr(label) for label in sorted(train_labels))
        raise _error(
            sources, None, f"the train split has only {len(train_labels)} class ({found}), and a classifier needs at least 2",
            "Add examples of other classes, or check that label_column names the label column",
        )

    for split in ("dev", "test"):
        unseen: dict[str, list[Example]] = defaultdict(list)
        for example in splits.get(split):
            if example.label not in train_labels:
                unseen[example.label].append(example)
        if unseen:
            raise _unseen_labels_error(split, unseen)


def _unseen_labels_error(split: str, unseen: dict[str, list[Example]]) -> DataError:
    listed = sorted(unseen.items(), key=lambda item: (item[1][0].source, item[1][0].line))
    first = listed[0][1][0]
    details = [
        f"label {label!r} ({len(examples)} example(s), first at {examples[0].source}:{examples[0].line})"
        for label, examples in listed[:MAX_LISTED]
    ]
    more = f" and {len(unseen) - MAX_LISTED} more" if len(unseen) > MAX_LISTED else ""
    return _error(
        first.source, first.line,
        f"{split} has {len(unseen)} label(s) that never occur in train, so the model cannot predict them: "
        f"{', '.join(details)}{more}",
        f"Add training examples with these labels, or remove them from {split}",
    )


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as UTF-8 so that readers see the old file or the new one, never a part.

    The text goes to a temporary file in the same directory, is flushed to
    disk, and then replaces ``path`` with ``os.replace``, which is atomic on
    POSIX file systems. A process killed mid-write (a Kubernetes Job that is
    evicted, for example) leaves at most a stray ``.<name>.*.tmp`` file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    # mkstemp creates the file 0600; give it the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temp_name, 0o666 & ~umask)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as temp_file:
            temp_file.write(text)
            temp_file.flush()
            os.fsync(temp_file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        # BaseException so that Ctrl-C also cleans up the temporary file.
        Path(temp_name).unlink(missing_ok=True)
        raise
