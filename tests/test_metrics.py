"""Tests of mangakd.metrics: hand-computed values, properties and the bootstrap."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mangakd.costs import business_weighted_error, cost_matrix_from_spec
from mangakd.evaluation import Estimate, bootstrap, evaluate_predictions
from mangakd.metrics import (
    MetricInputError,
    accuracy,
    agreement,
    brier_score,
    calibration_bins,
    expected_calibration_error,
    macro_f1,
    negative_log_likelihood,
    per_class_recall,
    softmax,
)
from mangakd.spec import CostEntry, CostMatrixSpec


def mean_of_rows(values: np.ndarray) -> np.ndarray:
    return values.mean(axis=-1)


def confident_probs(predicted: list[int], confidence: list[float], n_classes: int) -> np.ndarray:
    """Rows with the given top-label confidence, the rest spread evenly."""
    rows = np.empty((len(predicted), n_classes))
    for row, (label, top) in enumerate(zip(predicted, confidence)):
        rows[row] = (1.0 - top) / (n_classes - 1)
        rows[row, label] = top
    return rows


def random_model(seed: int, n_examples: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits), so the model is calibrated."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n_examples, n_classes))
    probs = softmax(logits)
    labels = (probs.cumsum(axis=1) > rng.random((n_examples, 1))).argmax(axis=1)
    return logits, labels


# --- ECE ---------------------------------------------------------------------------


def test_ece_zero_when_confidence_matches_accuracy() -> None:
    # Ten examples at confidence 0.8 with eight correct: one bin, accuracy 0.8.
    predicted = [0] * 10
    probs = confident_probs(predicted, [0.8] * 10, n_classes=5)
    y_true = np.array([0] * 8 + [1, 2])

    assert expected_calibration_error(probs, y_true) == pytest.approx(0.0, abs=1e-12)


def test_ece_two_bins_by_hand() -> None:
    # Two bins, (0, 0.5] and (0.5, 1]; three classes so that 0.5 is a unique top.
    # Upper bin: four examples at 0.9, all correct -> |1.0 - 0.9| = 0.1.
    # Lower bin: four at exactly 0.5, one correct -> |0.25 - 0.5| = 0.25.
    # ECE = 4/8 * 0.1 + 4/8 * 0.25 = 0.175.
    probs = confident_probs([0, 0, 0, 0, 1, 1, 1, 1], [0.9] * 4 + [0.5] * 4, n_classes=3)
    y_true = np.array([0, 0, 0, 0, 1, 0, 0, 0])

    assert expected_calibration_error(probs, y_true, n_bins=2) == pytest.approx(0.175)


def test_ece_two_bins_mixed_confidences() -> None:
    # Two bins again. Lower bin: none. Upper bin contains 0.6 (wrong), 0.7
    # (right), 0.8 (right), 1.0 (right): accuracy 0.75, mean confidence 0.775.
    # ECE = |0.75 - 0.775| = 0.025. With four bins instead, (0.5, 0.75]
    # contains 0.6 and 0.7 (acc 0.5, conf 0.65) and (0.75, 1] contains 0.8 and 1.0
    # (acc 1.0, conf 0.9): ECE = 0.5 * 0.15 + 0.5 * 0.1 = 0.125.
    probs = confident_probs([1, 0, 1, 0], [0.6, 0.7, 0.8, 1.0], n_classes=2)
    y_true = np.array([0, 0, 1, 0])

    assert expected_calibration_error(probs, y_true, n_bins=2) == pytest.approx(0.025)
    assert expected_calibration_error(probs, y_true, n_bins=4) == pytest.approx(0.125)


def test_calibration_bins_counts_by_hand() -> None:
    probs = confident_probs([1, 0, 1, 0], [0.6, 0.7, 0.8, 1.0], n_classes=2)
    y_true = np.array([0, 0, 1, 0])

    bins = calibration_bins(probs, y_true, n_bins=4)

    np.testing.assert_array_equal(bins.counts, [0, 0, 2, 2])
    np.testing.assert_array_equal(bins.correct, [0, 0, 1, 2])
    np.testing.assert_allclose(bins.mean_confidence[2:], [0.65, 0.9])
    np.testing.assert_allclose(bins.accuracy[2:], [0.5, 1.0])
    assert np.isnan(bins.accuracy[:2]).all()
    np.testing.assert_allclose(bins.edges, [0.0, 0.25, 0.5, 0.75, 1.0])


def test_ece_matches_calibration_bins() -> None:
    logits, labels = random_model(seed=3, n_examples=500, n_classes=6)
    probs = softmax(logits * 2.0)

    bins = calibration_bins(probs, labels, n_bins=15)
    filled = bins.counts > 0
    weights = bins.counts[filled] / bins.counts.sum()
    from_bins = float(np.sum(weights * np.abs(bins.accuracy[filled] - bins.mean_confidence[filled])))

    assert expected_calibration_error(probs, labels, n_bins=15) == pytest.approx(from_bins)


# --- classification metrics -----------------------------------------------------------


def test_classification_metrics_by_hand() -> None:
    # Class 0: TP 1, 2 true, 2 predicted -> F1 2/4 = 0.5, recall 0.5.
    # Class 1: TP 2, 2 true, 3 predicted -> F1 4/5 = 0.8, recall 1.0.
    # Class 2: TP 1, 2 true, 1 predicted -> F1 2/3, recall 0.5.
    # Class 3 appears in neither array and is left out of the macro mean.
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 0, 2])

    assert accuracy(y_true, y_pred) == pytest.approx(4 / 6)
    assert macro_f1(y_true, y_pred, n_classes=4) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    recall = per_class_recall(y_true, y_pred, n_classes=4)
    np.testing.assert_allclose(recall[:3], [0.5, 1.0, 0.5])
    assert np.isnan(recall[3])


def test_macro_f1_counts_class_only_predicted() -> None:
    # Class 1 is never true but predicted once, so its F1 is 0 and counts.
    # Class 0: TP 1, 2 true, 1 predicted -> F1 2/3. Mean (2/3 + 0) / 2.
    assert macro_f1([0, 0], [0, 1], n_classes=3) == pytest.approx(1 / 3)


def test_agreement_by_hand() -> None:
    assert agreement([1, 2, 3, 4], [1, 2, 0, 4]) == pytest.approx(0.75)


def test_nll_and_brier_by_hand() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3]])
    y_true = np.array([0, 2])

    # Brier: (0.3^2 + 0.2^2 + 0.1^2) = 0.14 and (0.2^2 + 0.5^2 + 0.7^2) = 0.78.
    assert negative_log_likelihood(probs, y_true) == pytest.approx(-(math.log(0.7) + math.log(0.3)) / 2)
    assert brier_score(probs, y_true) == pytest.approx((0.14 + 0.78) / 2)


def test_nll_clips_zero_probability() -> None:
    probs = np.array([[1.0, 0.0]])

    assert negative_log_likelihood(probs, [1]) == pytest.approx(-math.log(1e-12))


def test_softmax_stable_and_scaled() -> None:
    logits = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])

    probs = softmax(logits)
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_allclose(softmax(logits, temperature=2.0), softmax(logits / 2.0))
    np.testing.assert_allclose(softmax(logits + 5.0), probs)


def test_metrics_invariant_to_label_renaming() -> None:
    for seed in range(5):
        rng = np.random.default_rng(seed)
        logits, labels = random_model(seed, n_examples=300, n_classes=7)
        probs = softmax(logits * 1.5)
        predicted = probs.argmax(axis=1)

        # Class c becomes permutation[c]: the columns move so that new
        # column permutation[c] contains old column c.
        permutation = rng.permutation(7)
        renamed_probs = np.empty_like(probs)
        renamed_probs[:, permutation] = probs
        renamed_labels = permutation[labels]
        renamed_predicted = permutation[predicted]

        assert accuracy(renamed_labels, renamed_predicted) == pytest.approx(accuracy(labels, predicted))
        assert macro_f1(renamed_labels, renamed_predicted, 7) == pytest.approx(macro_f1(labels, predicted, 7))
        assert expected_calibration_error(renamed_probs, renamed_labels) == pytest.approx(
            expected_calibration_error(probs, labels)
        )
        assert negative_log_likelihood(renamed_probs, renamed_labels) == pytest.approx(
            negative_log_likelihood(probs, labels)
        )
        assert brier_score(renamed_probs, renamed_labels) == pytest.approx(brier_score(probs, labels))
        np.testing.assert_allclose(
            per_class_recall(renamed_labels, renamed_predicted, 7)[permutation],
            per_class_recall(labels, predicted, 7),
        )


# --- input checks ---------------------------------------------------------------------


def test_float_labels_rejected_naming_dtype() -> None:
    with pytest.raises(MetricInputError, match="float64"):
        accuracy(np.array([0.0, 1.0]), np.array([0, 1]))


def test_out_of_range_label_named() -> None:
    with pytest.raises(MetricInputError, match=r"y_true\[2\] = 5"):
        macro_f1([0, 1, 5], [0, 1, 1], n_classes=3)


def test_unnormalised_probs_rejected_naming_row() -> None:
    probs = np.array([[0.5, 0.5], [0.6, 0.6]])

    with pytest.raises(MetricInputError, match=r"probs\[1\] sums to 1.2"):
        expected_calibration_error(probs, [0, 1])


def test_length_mismatch_rejected() -> None:
    with pytest.raises(MetricInputError, match="3 examples but y_pred has 2"):
        accuracy([0, 1, 1], [0, 1])


def test_invalid_temperature_rejected() -> None:
    with pytest.raises(MetricInputError, match="got 0"):
        softmax(np.zeros((2, 3)), temperature=0)


def test_invalid_n_bins_rejected() -> None:
    with pytest.raises(MetricInputError, match="n_bins"):
        expected_calibration_error(np.full((2, 2), 0.5), [0, 1], n_bins=0)


# --- bootstrap --------------------------------------------------------------------------


def bernoulli_coverage(p: float, n: int, repetitions: int, confidence_level: float) -> float:
    rng = np.random.default_rng(12345)
    covered = 0
    for repetition in range(repetitions):
        sample = (rng.random(n) < p).astype(np.float64)
        estimate = bootstrap(
            mean_of_rows,
            (sample,),
            n_resamples=1000,
            confidence_level=confidence_level,
            seed=repetition,
            vectorized=True,
        )
        covered += estimate.ci_low <= p <= estimate.ci_high
    return covered / repetitions


def test_bootstrap_interval_covers_true_mean() -> None:
    # Over 200 repetitions the share of 95% intervals that cover p has a
    # binomial standard deviation of sqrt(0.95 * 0.05 / 200) ~ 0.015. Percentile
    # intervals under-cover a little at n = 200, so the band 0.88-0.99 leaves
    # about 4 standard deviations on either side. The 50% interval below shows
    # that a wrong interval falls far outside the band.
    coverage = bernoulli_coverage(p=0.3, n=200, repetitions=200, confidence_level=0.95)
    assert 0.88 <= coverage <= 0.99, f"95% interval covered p in {coverage:.3f} of repetitions"

    narrow = bernoulli_coverage(p=0.3, n=200, repetitions=200, confidence_level=0.5)
    assert narrow < 0.88, f"50% interval covered p in {narrow:.3f} of repetitions"


def test_bootstrap_interval_narrows_with_n() -> None:
    rng = np.random.default_rng(7)
    small = (rng.random(100) < 0.3).astype(np.float64)
    large = (rng.random(10_000) < 0.3).astype(np.float64)

    small_estimate = bootstrap(mean_of_rows, (small,), vectorized=True)
    large_estimate = bootstrap(mean_of_rows, (large,), vectorized=True)

    # The width scales with 1 / sqrt(n): ten times narrower for 100 times the data.
    small_width = small_estimate.ci_high - small_estimate.ci_low
    large_width = large_estimate.ci_high - large_estimate.ci_low
    assert large_width < small_width / 5


def test_bootstrap_value_is_full_sample_statistic() -> None:
    sample = np.array([1.0, 0.0, 1.0, 1.0])

    estimate = bootstrap(lambda values: float(values.mean()), (sample,), n_resamples=200)

    assert estimate.value == 0.75
    assert estimate.ci_low <= estimate.ci_high


def test_bootstrap_loop_matches_vectorized() -> None:
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 5, size=120)
    y_pred = np.where(rng.random(120) < 0.7, y_true, rng.integers(0, 5, size=120))

    looped = bootstrap(lambda t, p: float(np.mean(t == p)), (y_true, y_pred), n_resamples=300, seed=4)
    vectorized = bootstrap(
        lambda t, p: np.mean(t == p, axis=1), (y_true, y_pred), n_resamples=300, seed=4, vectorized=True
    )

    assert looped == vectorized


def test_bootstrap_keeps_pairs() -> None:
    # Identical teacher and student predictions: a paired resample gives a
    # difference of exactly 0 every time, an unpaired one would not.
    rng = np.random.default_rng(2)
    y_true = rng.integers(0, 3, size=200)
    predicted = rng.integers(0, 3, size=200)

    gap = bootstrap(
        lambda t, a, b: float(np.mean(a == t) - np.mean(b == t)), (y_true, predicted, predicted.copy())
    )

    assert (gap.ci_low, gap.ci_high) == (0.0, 0.0)


def test_bootstrap_rejects_bad_settings() -> None:
    with pytest.raises(MetricInputError, match="confidence_level"):
        bootstrap(mean_of_rows, (np.ones(3),), confidence_level=1.5)
    with pytest.raises(MetricInputError, match="first axis"):
        bootstrap(mean_of_rows, (np.ones(3), np.ones(4)))


def test_estimate_to_dict() -> None:
    assert Estimate(0.5, 0.4, 0.6).to_dict() == {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6}


# --- cost matrix --------------------------------------------------------------------------


def test_cost_matrix_uniform_without_spec() -> None:
    matrix = cost_matrix_from_spec(None, ["a", "b", "c"])

    np.testing.assert_array_equal(matrix, 1.0 - np.eye(3))


def test_cost_matrix_precedence() -> None:
    entries = [
        CostEntry(true_label="*", predicted_label="*", cost=3.0),
        CostEntry(true_label="*", predicted_label="b", cost=7.0),
        CostEntry(true_label="a", predicted_label="*", cost=5.0),
        CostEntry(true_label="a", predicted_label="b", cost=9.0),
        CostEntry(true_label="c", predicted_label="a", cost=0.5),
    ]
    # Rows are true labels a, b, c; columns are predicted labels.
    expected = np.array(
        [
            [0.0, 9.0, 5.0],  # a->b exact, a->c from (a, *)
            [3.0, 0.0, 3.0],  # from (*, *)
            [0.5, 7.0, 0.0],  # c->a exact, c->b from (*, b)
        ]
    )

    for order in ([0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 4, 0, 3, 1]):
        spec = CostMatrixSpec(default_cost=1.0, entries=[entries[i] for i in order])
        np.testing.assert_array_equal(cost_matrix_from_spec(spec, ["a", "b", "c"]), expected)


def test_cost_matrix_true_label_beats_predicted() -> None:
    spec = CostMatrixSpec(
        default_cost=2.0,
        entries=[
            CostEntry(true_label="*", predicted_label="b", cost=7.0),
            CostEntry(true_label="a", predicted_label="*", cost=5.0),
        ],
    )

    matrix = cost_matrix_from_spec(spec, ["a", "b", "c"])

    assert matrix[0, 1] == 5.0
    assert matrix[2, 1] == 7.0
    assert matrix[1, 2] == 2.0


def test_cost_matrix_unknown_label_named() -> None:
    spec = CostMatrixSpec(entries=[CostEntry(true_label="bannana", predicted_label="*", cost=2.0)])

    with pytest.raises(MetricInputError) as raised:
        cost_matrix_from_spec(spec, ["apple", "banana", "cherry"])

    message = str(raised.value)
    assert "'bannana'" in message
    assert "did you mean 'banana'" in message
    assert "'apple', 'banana', 'cherry'" in message


def test_cost_matrix_rejects_correct_prediction_cost() -> None:
    spec = CostMatrixSpec(entries=[CostEntry(true_label="a", predicted_label="a", cost=2.0)])

    with pytest.raises(MetricInputError, match="correct prediction"):
        cost_matrix_from_spec(spec, ["a", "b"])


def test_cost_matrix_rejects_duplicate_entries() -> None:
    entry = CostEntry(true_label="a", predicted_label="b", cost=2.0)
    spec = CostMatrixSpec(entries=[entry, entry])

    with pytest.raises(MetricInputError, match=r"entries\[0\] and \[1\]"):
        cost_matrix_from_spec(spec, ["a", "b"])


def test_business_weighted_error_by_hand() -> None:
    matrix = np.array([[0.0, 2.0, 1.0], [1.0, 0.0, 1.0], [4.0, 1.0, 0.0]])

    # Costs matrix[0, 1] = 2, matrix[1, 1] = 0 and matrix[2, 0] = 4, mean 2.
    assert business_weighted_error([0, 1, 2], [1, 1, 0], matrix) == pytest.approx(2.0)


# --- evaluate_predictions -----------------------------------------------------------------


@pytest.fixture(scope="module")
def report_inputs() -> dict[str, object]:
    rng = np.random.default_rng(11)
    teacher_logits, y_true = random_model(seed=11, n_examples=400, n_classes=8)
    teacher_logits = teacher_logits * 2.0
    student_logits = teacher_logits * 1.5 + rng.normal(scale=1.0, size=teacher_logits.shape)
    # No test example of class 7, so its recall is undefined.
    y_true = np.where(y_true == 7, 0, y_true)
    return {"student": student_logits, "teacher": teacher_logits, "y_true": y_true}


def evaluate(inputs: dict[str, object], **overrides: object) -> dict[str, object]:
    settings: dict[str, object] = {
        "student_temperature": 1.5,
        "label_names": [f"intent_{i}" for i in range(8)],
        "n_resamples": 200,
    }
    settings.update(overrides)
    return evaluate_predictions(inputs["student"], inputs["teacher"], inputs["y_true"], **settings)


def test_report_values_match_single_metrics(report_inputs: dict[str, object]) -> None:
    report = evaluate(report_inputs)
    y_true = report_inputs["y_true"]
    student_probs = softmax(report_inputs["student"], 1.5)
    teacher_probs = softmax(report_inputs["teacher"])
    student_pred = student_probs.argmax(axis=1)
    teacher_pred = teacher_probs.argmax(axis=1)

    student = report["student"]
    assert student["accuracy"]["value"] == pytest.approx(accuracy(y_true, student_pred))
    assert student["macro_f1"]["value"] == pytest.approx(macro_f1(y_true, student_pred, 8))
    assert student["ece"]["value"] == pytest.approx(expected_calibration_error(student_probs, y_true))
    assert student["ece_uncalibrated"]["value"] == pytest.approx(
        expected_calibration_error(softmax(report_inputs["student"]), y_true)
    )
    assert student["nll"]["value"] == pytest.approx(negative_log_likelihood(student_probs, y_true))
    assert student["brier"]["value"] == pytest.approx(brier_score(student_probs, y_true))
    assert student["business_error"]["value"] == pytest.approx(1.0 - accuracy(y_true, student_pred))
    assert report["teacher"]["nll"]["value"] == pytest.approx(negative_log_likelihood(teacher_probs, y_true))
    assert report["agreement"]["value"] == pytest.approx(agreement(student_pred, teacher_pred))
    assert report["accuracy_gap"]["value"] == pytest.approx(
        accuracy(y_true, teacher_pred) - accuracy(y_true, student_pred)
    )
    assert report["n_examples"] == 400


def test_report_shape_and_json(report_inputs: dict[str, object]) -> None:
    report = evaluate(report_inputs)

    json.dumps(report, allow_nan=False)
    expected_keys = {"accuracy", "macro_f1", "ece", "nll", "brier", "business_error", "per_class_recall"}
    assert set(report["teacher"]) == expected_keys
    assert set(report["student"]) == expected_keys | {"ece_uncalibrated"}
    assert report["student"]["per_class_recall"]["intent_7"] is None
    assert set(report["agreement"]) == {"value", "ci_low", "ci_high"}
    accuracy_estimate = report["student"]["accuracy"]
    assert accuracy_estimate["ci_low"] <= accuracy_estimate["value"] <= accuracy_estimate["ci_high"]


def test_report_uses_cost_matrix(report_inputs: dict[str, object]) -> None:
    doubled = 2.0 * (1.0 - np.eye(8))

    report = evaluate(report_inputs, cost_matrix=doubled)

    error_rate = 1.0 - report["student"]["accuracy"]["value"]
    assert report["student"]["business_error"]["value"] == pytest.approx(2.0 * error_rate)


def test_report_rejects_mismatched_logits(report_inputs: dict[str, object]) -> None:
    inputs = dict(report_inputs, teacher=report_inputs["teacher"][:, :7])

    with pytest.raises(MetricInputError, match="same examples and classes"):
        evaluate(inputs)
