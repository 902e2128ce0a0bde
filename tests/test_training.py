"""The training loop and student construction, on a real encoder and real texts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from mangakd import models
from mangakd.training import DistillTargets, TrainSettings, compute_logits, fit

SETTINGS = TrainSettings(
    epochs=2, learning_rate=1e-3, batch_size=16, max_length=16, warmup_ratio=0.1, weight_decay=0.01, seed=7
)


class Interrupted(Exception):
    pass


def _small_model(minilm_dir, labels):
    torch.manual_seed(0)
    teacher = models.new_classifier(minilm_dir, labels)
    return models.student_from_teacher_layers(teacher, [5])


def _data(clinc_slice):
    labels = clinc_slice["labels"]
    texts = [example.text for example in clinc_slice["train"]]
    ids = np.array([labels.index(example.label) for example in clinc_slice["train"]])
    return texts, ids


def test_resume_after_interrupted_epoch(tmp_path, minilm_dir, clinc_slice, one_thread):
    texts, ids = _data(clinc_slice)
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir))

    uninterrupted = _small_model(minilm_dir, clinc_slice["labels"])
    fit(uninterrupted, tokenizer, texts, ids, SETTINGS, tmp_path / "a.pt", run_key="k")

    # Kill the second run in the middle of epoch 2, then start it again.
    def stop_in_second_epoch(epoch, step):
        if epoch == 1 and step == 2:
            raise Interrupted

    resumed = _small_model(minilm_dir, clinc_slice["labels"])
    with pytest.raises(Interrupted):
        fit(resumed, tokenizer, texts, ids, SETTINGS, tmp_path / "b.pt", run_key="k", on_step=stop_in_second_epoch)
    restarted = _small_model(minilm_dir, clinc_slice["labels"])
    result = fit(restarted, tokenizer, texts, ids, SETTINGS, tmp_path / "b.pt", run_key="k")

    assert result.resumed_from_epoch == 1
    assert len(result.history) == 2
    for (name, expected), actual in zip(uninterrupted.state_dict().items(), restarted.state_dict().values()):
        assert torch.equal(expected, actual), f"{name} differs after resuming"


def test_checkpoint_of_other_settings_ignored(tmp_path, minilm_dir, clinc_slice):
    texts, ids = _data(clinc_slice)
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir))
    one_epoch = TrainSettings(**{**SETTINGS.__dict__, "epochs": 1})
    fit(_small_model(minilm_dir, clinc_slice["labels"]), tokenizer, texts, ids, one_epoch, tmp_path / "c.pt", run_key="old")
    result = fit(_small_model(minilm_dir, clinc_slice["labels"]), tokenizer, texts, ids, one_epoch, tmp_path / "c.pt", run_key="new")
    assert result.resumed_from_epoch == 0


def test_distillation_lowers_kd_loss(tmp_path, minilm_dir, clinc_slice):
    texts, ids = _data(clinc_slice)
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir))
    teacher = _small_model(minilm_dir, clinc_slice["labels"])
    fit(teacher, tokenizer, texts, ids, TrainSettings(**{**SETTINGS.__dict__, "epochs": 3}), tmp_path / "t.pt", run_key="t")
    teacher_logits = compute_logits(teacher, tokenizer, texts, max_length=16)

    student = _small_model(minilm_dir, clinc_slice["labels"])
    targets = DistillTargets(teacher_logits=teacher_logits, temperature=3.0, alpha=0.7)
    settings = TrainSettings(**{**SETTINGS.__dict__, "epochs": 3})
    result = fit(student, tokenizer, texts, ids, settings, tmp_path / "s.pt", run_key="s", targets=targets)
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_compute_logits_keeps_input_order(minilm_dir, clinc_slice):
    texts, _ = _data(clinc_slice)
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir))
    model = _small_model(minilm_dir, clinc_slice["labels"])
    batched = compute_logits(model, tokenizer, texts[:10], max_length=16, batch_size=4)
    one_by_one = np.concatenate([compute_logits(model, tokenizer, [text], max_length=16) for text in texts[:10]])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-4)


def test_evenly_spaced_layers():
    assert models.evenly_spaced_layers(6, 4) == [0, 2, 3, 5]
    assert models.evenly_spaced_layers(6, 2) == [0, 5]
    assert models.evenly_spaced_layers(6, 1) == [5]
    with pytest.raises(models.ModelError, match="numLayers=7"):
        models.evenly_spaced_layers(6, 7)


def test_student_copies_teacher_layers(minilm_dir, clinc_slice):
    torch.manual_seed(0)
    teacher = models.new_classifier(minilm_dir, clinc_slice["labels"])
    student = models.student_from_teacher_layers(teacher, [1, 4])
    assert student.config.num_hidden_layers == 2
    teacher_state = teacher.state_dict()
    copied_from = {".layer.0.": ".layer.1.", ".layer.1.": ".layer.4."}
    for key, value in student.state_dict().items():
        source = key
        for student_part, teacher_part in copied_from.items():
            if student_part in key:
                source = key.replace(student_part, teacher_part)
        assert torch.equal(value, teacher_state[source]), f"{key} is not a copy of {source}"
    assert models.count_parameters(student) < models.count_parameters(teacher)


def test_student_layer_out_of_range(minilm_dir, clinc_slice):
    teacher = models.new_classifier(minilm_dir, clinc_slice["labels"])
    with pytest.raises(models.ModelError, match=r"out of range for a 6-layer teacher"):
        models.student_from_teacher_layers(teacher, [0, 6])
