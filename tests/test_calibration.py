"""Tests of mangakd.calibration: temperature scaling and reliability diagrams."""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from mangakd.calibration import (
    calibrate,
    fit_temperature,
    reliability_diagram,
    reliability_diagrams,
)
from mangakd.metrics import MetricInputError, negative_log_likelihood, softmax

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def calibrated_model(seed: int, n_examples: int = 4000, n_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits), so T = 1 is the true temperature."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n_examples, n_classes))
    probs = softmax(logits)
    labels = (probs.cumsum(axis=1) > rng.random((n_examples, 1))).argmax(axis=1)
    return logits, labels


def test_overconfident_logits_give_temperature_near_3() -> None:
    logits, labels = calibrated_model(seed=0)

    temperature = fit_temperature(3.0 * logits, labels)

    # 4000 examples estimate T to within a few percent.
    assert temperature == pytest.approx(3.0, rel=0.05)


def test_calibrated_logits_give_temperature_near_1() -> None:
    logits, labels = calibrated_model(seed=1)

    assert fit_temperature(logits, labels) == pytest.approx(1.0, rel=0.05)


def test_calibration_lowers_nll_and_ece() -> None:
    logits, labels = calibrated_model(seed=2)

    result = calibrate(3.0 * logits, labels, n_bins=15)

    assert result["nll_after"] < result["nll_before"]
    assert result["ece_after"] < result["ece_before"]
    assert result["n_examples"] == 4000
    assert set(result) == {"temperature", "ece_before", "ece_after", "nll_before", "nll_after", "n_examples"}


def test_temperature_is_nll_minimiser() -> None:
    logits, labels = calibrated_model(seed=3, n_examples=2000)
    logits = 2.2 * logits + 0.5

    temperature = fit_temperature(logits, labels)

    # The NLL has one minimum along T, so being no worse than both neighbours
    # at +-0.1% puts the true minimiser within 0.1% of the fitted T.
    def nll(t: float) -> float:
        return negative_log_likelihood(softmax(logits, t), labels)

    assert nll(temperature) <= nll(temperature * (1 - 1e-3))
    assert nll(temperature) <= nll(temperature * (1 + 1e-3))


def test_temperature_gradient_vanishes() -> None:
    logits, labels = calibrated_model(seed=4, n_examples=2000)
    logits = 0.5 * logits

    temperature = fit_temperature(logits, labels)

    # d NLL / d(1/T) = mean over examples of E_p[z] - z_true, zero at the optimum.
    probs = softmax(logits, temperature)
    gradient = np.mean((probs * logits).sum(axis=1) - logits[np.arange(len(labels)), labels])
    assert abs(gradient) < 1e-5


def test_fit_is_deterministic() -> None:
    logits, labels = calibrated_model(seed=5, n_examples=500)

    assert fit_temperature(logits, labels) == fit_temperature(logits.copy(), labels.copy())


def test_constant_logits_give_temperature_1() -> None:
    assert fit_temperature(np.full((4, 3), 2.0), np.array([0, 1, 2, 0])) == 1.0


def test_separable_logits_warn_at_lower_bound() -> None:
    logits = 5.0 * np.eye(3)[[0, 1, 2, 0]]

    with pytest.warns(RuntimeWarning, match="lower bound"):
        temperature = fit_temperature(logits, np.array([0, 1, 2, 0]))

    assert temperature == pytest.approx(0.01, rel=1e-3)


def test_fit_rejects_length_mismatch() -> None:
    with pytest.raises(MetricInputError, match="3 examples but y_true has 2"):
        fit_temperature(np.zeros((3, 4)), np.array([0, 1]))


def test_fit_rejects_label_out_of_range() -> None:
    with pytest.raises(MetricInputError, match=r"y_true\[1\] = 4"):
        fit_temperature(np.zeros((2, 4)), np.array([0, 4]))


def test_fit_rejects_non_finite_logits() -> None:
    logits = np.zeros((2, 3))
    logits[1, 2] = math.nan

    with pytest.raises(MetricInputError, match=r"logits\[1\]"):
        fit_temperature(logits, np.array([0, 1]))


def test_calibrate_disabled_keeps_temperature_1() -> None:
    logits, labels = calibrated_model(seed=6, n_examples=300)

    result = calibrate(3.0 * logits, labels, enabled=False)

    assert result["temperature"] == 1.0
    assert result["nll_after"] == result["nll_before"]
    assert result["ece_after"] == result["ece_before"]


def test_reliability_diagrams_write_pngs(tmp_path: Path) -> None:
    logits, labels = calibrated_model(seed=7, n_examples=600)
    pyplot_loaded = "matplotlib.pyplot" in sys.modules

    before, after = reliability_diagrams(3.0 * logits, labels, 3.0, tmp_path / "plots", n_bins=10)

    assert before == tmp_path / "plots" / "reliability_before.png"
    assert after == tmp_path / "plots" / "reliability_after.png"
    for path in (before, after):
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE), f"{path.name} is not a PNG file"
        assert len(data) > 1000, f"{path.name} has only {len(data)} bytes"
    # Drawing goes through a Figure and its own canvas, never through pyplot.
    assert ("matplotlib.pyplot" in sys.modules) == pyplot_loaded


def test_reliability_diagram_single_class_bin(tmp_path: Path) -> None:
    # All examples in one bin, the others empty: the plot must still render.
    probs = np.tile([0.9, 0.05, 0.05], (20, 1))
    labels = np.zeros(20, dtype=np.int64)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = reliability_diagram(probs, labels, tmp_path / "one.png", n_bins=15, title="One bin")

    assert path.read_bytes().startswith(PNG_SIGNATURE)
