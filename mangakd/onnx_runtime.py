"""Run an exported intent classifier with onnxruntime.

The inference server builds one :class:`OnnxClassifier` per model at start-up,
and the export and latency code share its session and tokenisation helpers, so
every consumer feeds an ONNX model the same way. This module uses no torch API.
It needs only onnxruntime and the transformers tokenizers.

An export directory contains the ONNX file, the tokenizer files that
``AutoTokenizer.save_pretrained`` writes, and a ``manifest.json``::

    {"model": "student.onnx", "labels": ["alarm", ...], "temperature": 1.4,
     "max_length": 64, "tokenizer": "."}

``model`` and ``tokenizer`` are paths relative to the export directory.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import onnxruntime as ort
from transformers import AutoTokenizer, PreTrainedTokenizerBase

MANIFEST_NAME = "manifest.json"


class ManifestError(ValueError):
    """An export manifest is missing a field or has an invalid value."""


def default_thread_count() -> int:
    """Return the number of CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def check_texts(texts: Sequence[str]) -> list[str]:
    """Return ``texts`` as a list, raising ValueError if it is empty or contains a non-string."""
    if isinstance(texts, str):
        raise ValueError(
            f"texts must be a list of strings, got a single string {texts[:40]!r}; "
            "wrap it in a list"
        )
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty; pass at least one text")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(
                f"texts[{index}] is {type(text).__name__} {text!r}, not a string; "
                "pass only strings"
            )
    return texts


def make_session(
    onnx_path: str | os.PathLike[str],
    *,
    threads: int | None = None,
    allow_spinning: bool = True,
) -> ort.InferenceSession:
    """Open a CPU onnxruntime session with a fixed number of intra-op threads.

    Parameters
    ----------
    onnx_path
        The ``.onnx`` file.
    threads
        Intra-op threads. None means every core this process may use.
    allow_spinning
        Whether idle intra-op threads busy-wait for the next run. Spinning
        lowers latency for a single model, but the spinning threads of one
        session steal cores from another session that runs in the same process.

    Raises
    ------
    FileNotFoundError
        If ``onnx_path`` does not exist.
    ValueError
        If ``threads`` is below 1.
    """
    path = Path(onnx_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"ONNX model {str(path)!r} not found; export one with mangakd.export.export_onnx"
        )
    if threads is None:
        threads = default_thread_count()
    if threads < 1:
        raise ValueError(
            f"threads must be at least 1, got {threads}; pass None to use every core"
        )

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # Encoders are a chain of operators, so a second pool for parallel
    # branches only adds threads that compete with the intra-op pool.
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    spinning = "1" if allow_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    return ort.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def encode_for_session(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    input_names: Sequence[str],
    *,
    max_length: int,
) -> dict[str, np.ndarray]:
    """Tokenise ``texts`` into the int64 feed that an exported model expects.

    Texts are truncated to ``max_length`` tokens and padded to the longest
    text in the batch. A model that declares ``token_type_ids`` while the
    tokenizer returns none gets zeros, which is the segment id of single-text
    input.

    Returns
    -------
    dict of str to ndarray
        One int64 array of shape (len(texts), sequence) per name in
        ``input_names``.

    Raises
    ------
    ValueError
        If the model needs an input that the tokenizer cannot produce.
    """
    encoding = tokenizer(
        list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="np"
    )
    feed: dict[str, np.ndarray] = {}
    for name in input_names:
        if name in encoding:
            feed[name] = np.asarray(encoding[name], dtype=np.int64)
        elif name == "token_type_ids":
            feed[name] = np.zeros_like(encoding["input_ids"], dtype=np.int64)
        else:
            raise ValueError(
                f"the ONNX model needs input {name!r}, which tokenizer {type(tokenizer).__name__} "
                f"does not return (it returns {sorted(encoding.keys())}); export the model "
                "with the tokenizer it was trained with"
            )
    return feed


def softmax_with_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Return ``softmax(logits / temperature)`` row by row.

    ``logits`` has shape (n, num_labels) and the result is float64 of the same
    shape. A temperature above 1 softens the probabilities, below 1 sharpens them.
    """
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    # Subtracting the row maximum keeps exp() from overflowing and leaves softmax unchanged.
    scaled -= scaled.max(axis=1, keepdims=True)
    exps = np.exp(scaled)
    return exps / exps.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class ExportManifest:
    """Contents of ``manifest.json`` in an export directory."""

    model: str
    labels: list[str]
    temperature: float
    max_length: int
    tokenizer: str = "."

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            _reject("model", self.model, "set it to the ONNX file name")
        if not isinstance(self.labels, list) or not self.labels:
            _reject("labels", self.labels, "set it to the list of intent names")
        if not all(isinstance(label, str) and label for label in self.labels):
            _reject("labels", self.labels, "every intent name must be a non-empty string")
        duplicates = sorted({label for label in self.labels if self.labels.count(label) > 1})
        if duplicates:
            _reject("labels", self.labels, f"it repeats {duplicates}; list each intent once")
        if not _is_number(self.temperature) or not 0 < self.temperature < math.inf:
            _reject("temperature", self.temperature, "set a finite number above 0")
        if not _is_integer(self.max_length) or self.max_length < 1:
            _reject("max_length", self.max_length, "set a positive number of tokens")
        if not isinstance(self.tokenizer, str) or not self.tokenizer:
            _reject("tokenizer", self.tokenizer, "set the tokenizer folder ('.': export dir)")


def _reject(field: str, value: object, fix: str) -> NoReturn:
    raise ManifestError(f"manifest field {field!r} is {value!r}; {fix}")


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def write_manifest(
    export_dir: str | os.PathLike[str],
    *,
    model_file: str,
    labels: Sequence[str],
    temperature: float,
    max_length: int,
    tokenizer: str = ".",
) -> Path:
    """Validate the fields and write ``manifest.json`` into ``export_dir``.

    Returns
    -------
    Path
        The manifest file.

    Raises
    ------
    ManifestError
        If a field is invalid. Nothing is written then.
    """
    if isinstance(labels, str):
        _reject("labels", labels, "pass a list of intent names, not one string")
    # numpy scalars from calibration become plain numbers, which json can write.
    if isinstance(temperature, numbers.Real) and not isinstance(temperature, bool):
        temperature = float(temperature)
    if isinstance(max_length, numbers.Integral) and not isinstance(max_length, bool):
        max_length = int(max_length)
    manifest = ExportManifest(
        model=model_file,
        labels=list(labels),
        temperature=temperature,
        max_length=max_length,
        tokenizer=tokenizer,
    )
    directory = Path(export_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / MANIFEST_NAME
    path.write_text(json.dumps(asdict(manifest), indent=2) + "\n", encoding="utf-8")
    return path


def read_manifest(export_dir: str | os.PathLike[str]) -> ExportManifest:
    """Read and validate ``manifest.json`` from ``export_dir``.

    Raises
    ------
    FileNotFoundError
        If the directory or its manifest is missing.
    ManifestError
        If the file is not a JSON object with valid fields.
    """
    path = Path(export_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"export manifest {str(path)!r} not found; "
            "write it with mangakd.onnx_runtime.write_manifest"
        )
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ManifestError(
            f"{path} is not valid JSON ({error}); rewrite it with write_manifest"
        ) from error
    if not isinstance(raw, dict):
        raise ManifestError(
            f"{path} contains {type(raw).__name__}, not a JSON object; "
            "rewrite it with write_manifest"
        )

    expected = {"model", "labels", "temperature", "max_length", "tokenizer"}
    missing = sorted(expected - {"tokenizer"} - raw.keys())
    if missing:
        raise ManifestError(f"{path} is missing {missing}; rewrite it with write_manifest")
    unknown = sorted(raw.keys() - expected)
    if unknown:
        raise ManifestError(
            f"{path} has unknown fields {unknown}; the allowed fields are {sorted(expected)}"
        )
    try:
        return ExportManifest(**raw)
    except ManifestError as error:
        raise ManifestError(f"{path}: {error}") from error


class OnnxClassifier:
    """Intent classifier that runs an export directory with onnxruntime.

    Parameters
    ----------
    export_dir
        Directory with ``manifest.json``, the ONNX file and the tokenizer.
    threads
        Intra-op threads of the session. None means every core this process may use.
    batch_size
        Maximum number of texts per onnxruntime call, which bounds memory for long lists.
    model_file
        ONNX file inside ``export_dir`` to run instead of the manifest's, e.g. ``model.int8.onnx``.

    Raises
    ------
    FileNotFoundError
        If the directory, the manifest, the model file or the tokenizer folder is missing.
    ManifestError
        If the manifest is invalid or its labels do not match the model's output width.
    """

    def __init__(
        self,
        export_dir: str | os.PathLike[str],
        *,
        threads: int | None = None,
        batch_size: int = 32,
        model_file: str | None = None,
    ) -> None:
        directory = Path(export_dir)
        if not directory.is_dir():
            raise FileNotFoundError(
                f"export directory {str(directory)!r} not found; "
                f"pass the folder that contains {MANIFEST_NAME}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.manifest = read_manifest(directory)
        if model_file is not None:
            self.manifest = replace(self.manifest, model=model_file)
        self.batch_size = batch_size
        self.threads = threads if threads is not None else default_thread_count()

        self.session = make_session(directory / self.manifest.model, threads=self.threads)
        self.input_names = [node.name for node in self.session.get_inputs()]
        output_width = self.session.get_outputs()[0].shape[-1]
        # A symbolic width (a string) cannot be checked until the first run.
        if isinstance(output_width, int) and output_width != len(self.manifest.labels):
            raise ManifestError(
                f"{directory / MANIFEST_NAME} lists {len(self.manifest.labels)} labels but "
                f"{self.manifest.model} outputs {output_width} logits; write the manifest from the "
                "model's id2label"
            )

        tokenizer_dir = directory / self.manifest.tokenizer
        if not tokenizer_dir.is_dir():
            raise FileNotFoundError(
                f"tokenizer folder {str(tokenizer_dir)!r} not found; save the tokenizer "
                "there or fix 'tokenizer' in the manifest"
            )
        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))

    @property
    def labels(self) -> list[str]:
        """Intent names in logit order."""
        return list(self.manifest.labels)

    @property
    def temperature(self) -> float:
        """Calibration temperature applied before softmax."""
        return float(self.manifest.temperature)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Return raw logits as a float32 array of shape (len(texts), num_labels).

        Raises
        ------
        ValueError
            If ``texts`` is empty or contains a non-string.
        """
        texts = check_texts(texts)
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            feed = encode_for_session(
                self.tokenizer,
                texts[start : start + self.batch_size],
                self.input_names,
                max_length=self.manifest.max_length,
            )
            chunks.append(self.session.run(None, feed)[0])
        logits = np.concatenate(chunks, axis=0)
        if logits.shape[1] != len(self.manifest.labels):
            raise ManifestError(
                f"the model returned {logits.shape[1]} logits but the manifest lists "
                f"{len(self.manifest.labels)} labels; write the manifest from the model's id2label"
            )
        return logits

    def predict(self, texts: Sequence[str], top_k: int = 3) -> list[dict[str, Any]]:
        """Classify texts with calibrated confidences.

        Confidence is ``softmax(logits / temperature)`` with the manifest's temperature.

        Parameters
        ----------
        texts
            Non-empty list of texts.
        top_k
            Number of best intents to list per text. Values above the number
            of labels list every label.

        Returns
        -------
        list of dict
            One ``{"intent", "confidence", "top_k"}`` per text, where ``top_k``
            is a list of ``{"intent", "confidence"}`` sorted by descending confidence.

        Raises
        ------
        ValueError
            If ``texts`` is empty or contains a non-string, or ``top_k`` is below 1.
        """
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be an integer of at least 1, got {top_k!r}")
        probabilities = softmax_with_temperature(self.logits(texts), self.manifest.temperature)
        count = min(top_k, len(self.manifest.labels))
        # A stable sort on the negated values keeps the lower label index first on ties.
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :count]

        predictions = []
        for row, indices in zip(probabilities, order):
            ranked = [
                {"intent": self.manifest.labels[index], "confidence": float(row[index])}
                for index in indices
            ]
            best = ranked[0]
            predictions.append(
                {"intent": best["intent"], "confidence": best["confidence"], "top_k": ranked}
            )
        return predictions
