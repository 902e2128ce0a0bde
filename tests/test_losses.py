"""Golden values for the distillation losses, on one CPU thread."""

import math

import pytest
import torch

from mangakd.losses import distillation_loss, hidden_state_loss, soft_target_loss

torch.set_num_threads(1)


def _reference_kd(student, teacher, label, temperature, alpha):
    """Compute the KD loss of one example with plain Python math, independently of torch."""

    def softmax(values):
        top = max(values)
        exps = [math.exp(v - top) for v in values]
        return [e / sum(exps) for e in exps]

    p_teacher = softmax([v / temperature for v in teacher])
    p_student = softmax([v / temperature for v in student])
    kl = sum(pt * (math.log(pt) - math.log(ps)) for pt, ps in zip(p_teacher, p_student))
    cross_entropy = -math.log(softmax(student)[label])
    return alpha * temperature**2 * kl + (1 - alpha) * cross_entropy


def test_kd_loss_hand_computed_t1():
    # Teacher [ln 3, 0] gives p_t = [0.75, 0.25]; student [0, 0] gives [0.5, 0.5].
    # KL = 0.75 ln 1.5 + 0.25 ln 0.5 = 0.130812; CE(label 0) = ln 2 = 0.693147.
    # Total at alpha 0.7: 0.7 * 0.130812 + 0.3 * 0.693147 = 0.299513.
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0]])
    total, soft, hard = distillation_loss(student, teacher, torch.tensor([0]), temperature=1.0, alpha=0.7)
    assert soft.item() == pytest.approx(0.130812, abs=1e-6)
    assert hard.item() == pytest.approx(0.693147, abs=1e-6)
    assert total.item() == pytest.approx(0.299513, abs=1e-6)


def test_soft_loss_scaled_by_t_squared():
    # At T = 2 the teacher becomes [ln 3 / 2, 0]: p_t = [0.633975, 0.366025].
    # KL = 0.633975 ln 1.267949 + 0.366025 ln 0.732051 = 0.036341, times T^2 = 0.145363.
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0]])
    assert soft_target_loss(student, teacher, 2.0).item() == pytest.approx(0.145363, abs=1e-5)


def test_kd_loss_matches_reference_batch():
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(5, 7, generator=generator) * 3
    teacher = torch.randn(5, 7, generator=generator) * 3
    labels = torch.tensor([0, 3, 6, 2, 2])
    total, _, _ = distillation_loss(student, teacher, labels, temperature=3.0, alpha=0.7)
    expected = sum(
        _reference_kd(student[i].tolist(), teacher[i].tolist(), int(labels[i]), 3.0, 0.7) for i in range(5)
    ) / 5
    assert total.item() == pytest.approx(expected, rel=1e-5)


def test_kd_loss_zero_when_student_copies_teacher():
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    _, soft, _ = distillation_loss(logits, logits.clone(), torch.tensor([0]), temperature=3.0, alpha=1.0)
    assert soft.item() == pytest.approx(0.0, abs=1e-7)


def test_alpha_bounds_rejected():
    logits = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="alpha must be in"):
        distillation_loss(logits, logits, torch.tensor([0]), temperature=1.0, alpha=1.5)


def test_temperature_must_be_positive():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        soft_target_loss(torch.zeros(1, 2), torch.zeros(1, 2), 0.0)


def test_shape_mismatch_names_label_map():
    with pytest.raises(ValueError, match="same label map"):
        distillation_loss(torch.zeros(1, 2), torch.zeros(1, 3), torch.tensor([0]), 1.0, 0.5)


def test_hidden_loss_ignores_padding():
    # One student layer copied from teacher layer 1; the padded position differs wildly.
    embeddings = torch.zeros(1, 3, 4)
    student_layer = torch.ones(1, 3, 4)
    teacher_layer = torch.ones(1, 3, 4)
    teacher_layer[0, 2] = 100.0
    teacher_layer[0, 0] = 3.0  # a squared error of 4 on one of two real tokens
    mask = torch.tensor([[1, 1, 0]])
    loss = hidden_state_loss(
        (embeddings, student_layer), (embeddings, torch.zeros(1, 3, 4), teacher_layer), [1], mask
    )
    assert loss.item() == pytest.approx(2.0)
