"""Export a sequence classifier to ONNX, check it against torch, and quantize it to int8.

A classifier directory is what ``AutoModelForSequenceClassification.save_pretrained``
and ``AutoTokenizer.save_pretrained`` write into one folder: ``config.json`` with
``id2label`` set to the intent names, the weights, and the tokenizer files.

The ONNX graph takes the inputs that the tokenizer returns, so a runtime can
feed the tokenizer output unchanged. These are ``input_ids`` and
``attention_mask``, then ``token_type_ids`` when the tokenizer returns it and
the model's ``forward`` accepts it. BERT and MiniLM take it, DistilBERT does not.
Every input is int64 of shape (batch, sequence), and the single output ``logits``
is float32 of shape (batch, num_labels). Batch and sequence axes are dynamic, and
sequence may be at most the model's ``max_position_embeddings``.

The export uses the torch.export based exporter (``torch.onnx.export(...,
dynamo=True)``, which needs onnxscript), because since torch 2.9 the
TorchScript exporter (``dynamo=False``) raises a DeprecationWarning.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from mangakd.onnx_runtime import check_texts, encode_for_session, make_session

# The example batch that torch.export traces. Its batch size (2) and sequence
# length (16) are above 1, because torch.export turns an axis whose example
# size is 0 or 1 into that constant even when it is declared dynamic.
_EXAMPLE_TEXTS = ["book a table for two at eight", "wake me up at 6"]
_EXAMPLE_SEQUENCE = 16

_DEFAULT_LABEL = re.compile(r"LABEL_\d+")


class NotAClassifierError(ValueError):
    """A model directory does not contain a sequence classifier with named labels."""


def read_classifier_labels(model_dir: str | os.PathLike[str]) -> list[str]:
    """Check that ``model_dir`` contains a sequence classifier and return its labels.

    Returns
    -------
    list of str
        Intent names in logit order, taken from ``id2label`` in ``config.json``.

    Raises
    ------
    FileNotFoundError
        If the directory or its ``config.json`` is missing.
    NotAClassifierError
        If the architecture is not ``*ForSequenceClassification`` or
        ``id2label`` is missing, has gaps, or contains only the
        ``LABEL_<i>`` names that transformers invents.
    """
    directory = Path(model_dir)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"model directory {str(directory)!r} not found; "
            "pass the folder written by save_pretrained"
        )
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{str(config_path)!r} not found; save the model with "
            "AutoModelForSequenceClassification.save_pretrained"
        )
    config: dict[str, Any] = json.loads(config_path.read_text(encoding="utf-8"))

    architectures = config.get("architectures") or []
    if not any(name.endswith("ForSequenceClassification") for name in architectures):
        raise NotAClassifierError(
            f"{config_path} declares architectures {architectures}, not a "
            "*ForSequenceClassification model; load the encoder with "
            "AutoModelForSequenceClassification, train it, and save it with save_pretrained"
        )

    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        raise NotAClassifierError(
            f"{config_path} has no id2label; pass id2label with the intent names to "
            "from_pretrained before saving"
        )
    if not all(str(key).isdigit() for key in id2label):
        raise NotAClassifierError(
            f"{config_path} id2label has keys {sorted(id2label)}; the keys must be the label "
            "ids 0, 1, 2, ..."
        )
    indices = sorted(int(key) for key in id2label)
    if indices != list(range(len(indices))):
        raise NotAClassifierError(
            f"{config_path} id2label has ids {indices}; "
            f"the ids must be 0 to {len(indices) - 1} without gaps"
        )
    labels = [str(id2label[str(index)]) for index in indices]
    if all(_DEFAULT_LABEL.fullmatch(label) for label in labels):
        raise NotAClassifierError(
            f"{config_path} id2label contains only placeholder names {labels[:3]}...; "
            "set id2label to the intent names before saving"
        )
    return labels


def load_torch_classifier(model_dir: str | os.PathLike[str]) -> PreTrainedModel:
    """Load the classifier in ``model_dir`` in eval mode.

    Raises
    ------
    FileNotFoundError, NotAClassifierError
        As :func:`read_classifier_labels`. NotAClassifierError also when the
        weights lack a tensor, for example an untrained classification head.
    """
    read_classifier_labels(model_dir)
    model, loading_info = AutoModelForSequenceClassification.from_pretrained(
        str(model_dir), output_loading_info=True
    )
    missing = list(loading_info.get("missing_keys") or [])
    if missing:
        raise NotAClassifierError(
            f"the weights in {model_dir} lack {missing[:4]}; transformers would initialise "
            "them at random, so save the trained classifier with save_pretrained"
        )
    return model.eval()


class _LogitsOnly(torch.nn.Module):
    """Wrap a classifier so that the traced graph returns the logits tensor alone."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        return self.model(**inputs).logits


def _onnx_input_names(model: PreTrainedModel, tokenizer_input_names: Sequence[str]) -> list[str]:
    """Return the graph inputs in the order of ``_LogitsOnly.forward``, which the exporter keeps."""
    accepted = inspect.signature(model.forward).parameters
    for required in ("input_ids", "attention_mask"):
        if required not in tokenizer_input_names or required not in accepted:
            raise NotAClassifierError(
                f"the tokenizer returns {list(tokenizer_input_names)} and the model accepts "
                f"{sorted(accepted)}; both must include {required!r}"
            )
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in tokenizer_input_names and "token_type_ids" in accepted:
        names.append("token_type_ids")
    return names


def export_onnx(
    model_dir: str | os.PathLike[str],
    onnx_path: str | os.PathLike[str],
    *,
    opset: int = 17,
) -> Path:
    """Export the classifier in ``model_dir`` to a single ONNX file.

    Parameters
    ----------
    model_dir
        Classifier directory with weights and tokenizer.
    onnx_path
        Output file. Missing parent folders are created.
    opset
        ONNX opset of the default domain. torch 2.13 translates at opset 18 or
        higher and converts the graph down with the onnx version converter.

    Returns
    -------
    Path
        ``onnx_path``, which passed ``onnx.checker.check_model``.

    Raises
    ------
    FileNotFoundError, NotAClassifierError
        If ``model_dir`` is missing or is not a classifier directory.
    ValueError
        If the saved graph has another opset, because torch keeps its own
        opset when the down-conversion fails.
    """
    model = load_torch_classifier(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    input_names = _onnx_input_names(model, tokenizer.model_input_names)

    example = tokenizer(
        _EXAMPLE_TEXTS,
        padding="max_length",
        truncation=True,
        max_length=_EXAMPLE_SEQUENCE,
        return_tensors="pt",
    )
    example_inputs = {name: example[name] for name in input_names}

    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence", max=model.config.max_position_embeddings)
    dynamic_shapes = {name: {0: batch, 1: sequence} for name in input_names}

    with warnings.catch_warnings():
        # Both warnings come from torch 2.13 internals. The exporter reports that
        # axes sharing one Dim keep one name, and its pytree code uses a deprecated check.
        warnings.filterwarnings("ignore", message=r"# The axis name", category=UserWarning)
        warnings.filterwarnings("ignore", message=r".*LeafSpec", category=FutureWarning)
        program = torch.onnx.export(
            _LogitsOnly(model).eval(),
            (),
            kwargs=example_inputs,
            input_names=input_names,
            output_names=["logits"],
            opset_version=opset,
            dynamo=True,
            dynamic_shapes=dynamic_shapes,
            verbose=False,
        )

    path = Path(onnx_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # NOTE: weights stay inside the .onnx file, which protobuf limits to 2 GB.
    # BERT-family intent classifiers are far below that, and larger models fail here.
    program.save(str(path), external_data=False)
    saved = onnx.load(str(path))
    onnx.checker.check_model(saved)
    saved_opset = next((entry.version for entry in saved.opset_import if entry.domain == ""), None)
    if saved_opset != opset:
        raise ValueError(
            f"{path} has opset {saved_opset}, not the requested opset {opset}, because "
            f"the down-conversion failed; pass opset={saved_opset} if the target "
            "onnxruntime supports it"
        )
    return path


def check_parity(
    model_dir: str | os.PathLike[str],
    onnx_path: str | os.PathLike[str],
    texts: Sequence[str],
    *,
    max_length: int = 64,
    batch_size: int = 32,
) -> dict[str, float | int]:
    """Compare the logits of the torch classifier and an ONNX export on the same inputs.

    Both models get identical token ids, padded to the longest text of each
    batch, so any difference comes from the graph or its numerics. Pass an
    int8 file as ``onnx_path`` to measure what quantization changed.

    Returns
    -------
    dict
        ``max_abs_logit_diff``: largest absolute difference over all texts and labels.
        ``argmax_agreement``: fraction of texts with the same top label, in [0, 1].
        ``n``: number of texts.

    Raises
    ------
    FileNotFoundError, NotAClassifierError
        If the model directory or the ONNX file is missing or invalid.
    ValueError
        If ``texts`` is empty, or ``max_length`` or ``batch_size`` is below 1.
    """
    texts = check_texts(texts)
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")

    model = load_torch_classifier(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    session = make_session(onnx_path)
    input_names = [node.name for node in session.get_inputs()]

    max_diff = 0.0
    agreeing = 0
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        feed = encode_for_session(tokenizer, batch, input_names, max_length=max_length)
        onnx_logits = session.run(["logits"], feed)[0]
        torch_inputs = {name: torch.from_numpy(array) for name, array in feed.items()}
        with torch.no_grad():
            torch_logits = model(**torch_inputs).logits.numpy()

        max_diff = max(max_diff, float(np.abs(onnx_logits - torch_logits).max()))
        agreeing += int((onnx_logits.argmax(axis=1) == torch_logits.argmax(axis=1)).sum())

    return {
        "max_abs_logit_diff": max_diff,
        "argmax_agreement": agreeing / len(texts),
        "n": len(texts),
    }


def quantize_int8(
    onnx_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    per_channel: bool = True,
) -> Path:
    """Write a dynamically quantized copy of an ONNX model with int8 weights.

    MatMul weights and embedding tables (Gather) are stored as int8, and activations are
    quantized at run time (``onnxruntime.quantization.quantize_dynamic``), so no
    calibration data is needed. Per-channel scales follow the range of each
    output column, which loses less precision than one scale per matrix.

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    FileNotFoundError
        If ``onnx_path`` does not exist.
    ValueError
        If ``out_path`` is the same file as ``onnx_path``.
    """
    source = Path(onnx_path)
    target = Path(out_path)
    if not source.is_file():
        raise FileNotFoundError(
            f"ONNX model {str(source)!r} not found; export it with export_onnx first"
        )
    if target.resolve() == source.resolve():
        raise ValueError(
            f"out_path {str(target)!r} is the input file; "
            "choose a different path for the int8 model"
        )
    target.parent.mkdir(parents=True, exist_ok=True)

    # onnxruntime suggests quant_pre_process first and logs a warning without
    # it. Its symbolic shape inference fails on graphs from the torch.export
    # based exporter (onnxruntime 1.32), so this step is skipped.
    quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=per_channel)
    return target
