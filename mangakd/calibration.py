"""Temperature scaling of the student and reliability diagrams.

The calibrate stage fits one temperature T on the dev split's logits
(Guo et al., "On Calibration of Modern Neural Networks", ICML 2017). The
student then serves softmax(logits / T). Dividing by a positive T never
changes the argmax, so accuracy and agreement stay as they were.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mangakd.metrics import (
    MetricInputError,
    calibration_bins,
    check_labels,
    check_logits,
    expected_calibration_error,
    negative_log_likelihood,
    softmax,
)

# Search interval of T. A fitted T outside it means the logits are degenerate
# for calibration (see the warnings in fit_temperature), not merely sharp or flat.
MIN_TEMPERATURE = 1e-2
MAX_TEMPERATURE = 1e2

_GOLDEN_RATIO = (math.sqrt(5.0) - 1.0) / 2.0


def _temperature_nll(shifted_logits: np.ndarray, true_logits: np.ndarray, log_temperature: float) -> float:
    """Mean NLL of softmax(logits / T) from row-max-shifted logits (all <= 0)."""
    inverse = math.exp(-log_temperature)

    # The row maximum of the shifted logits is 0, so the largest exp() term is
    # 1 and the log-sum-exp neither overflows nor underflows to log(0).
    log_partition = np.log(np.exp(shifted_logits * inverse).sum(axis=1))
    return float(np.mean(log_partition - true_logits * inverse))


def fit_temperature(logits: Any, y_true: Any, *, max_iter: int = 100, tol: float = 1e-7) -> float:
    """Fit the temperature T > 0 that minimises the NLL of softmax(logits / T).

    The NLL is convex in 1 / T, so it has a single minimum along log T, and a
    golden-section search on log T over [0.01, 100] finds it without
    gradients. The search is deterministic: the same inputs give the same T.

    Parameters
    ----------
    logits : array of shape (n_examples, n_classes)
        Uncalibrated logits of the dev split.
    y_true : array of shape (n_examples,)
    max_iter : int
        Maximum golden-section steps. Each step shrinks the interval by a
        factor of 0.618, so about 40 steps reach the default ``tol``.
    tol : float
        Width of the final interval on log T; 1e-7 is a relative error of
        about 1e-7 on T.

    Returns
    -------
    float
        The fitted T, or 1.0 when every row of logits is constant, because T
        then has no effect on the probabilities.

    Warns
    -----
    RuntimeWarning
        When T ends at a bound of the search interval: the logits separate
        the labels perfectly (T -> 0), or they rank the true class below
        average (T -> infinity).
    """
    logits = check_logits(logits)
    y_true = check_labels(y_true, "y_true", logits.shape[1])
    if len(y_true) != len(logits):
        raise MetricInputError(
            f"logits has {len(logits)} examples but y_true has {len(y_true)}; pass the same examples"
        )
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise MetricInputError(f"max_iter must be a positive integer, got {max_iter!r}")
    if not tol > 0:
        raise MetricInputError(f"tol must be positive, got {tol!r}")

    shifted = logits - logits.max(axis=1, keepdims=True)
    if not shifted.any():
        return 1.0
    true_logits = shifted[np.arange(len(y_true)), y_true]

    def objective(log_temperature: float) -> float:
        return _temperature_nll(shifted, true_logits, log_temperature)

    # Golden-section search keeps two interior points and drops the outer part
    # on the side of the larger NLL, reusing one NLL value per step.
    low, high = math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)
    left = high - _GOLDEN_RATIO * (high - low)
    right = low + _GOLDEN_RATIO * (high - low)
    left_nll, right_nll = objective(left), objective(right)
    for _ in range(max_iter):
        if high - low <= tol:
            break
        if left_nll <= right_nll:
            high, right, right_nll = right, left, left_nll
            left = high - _GOLDEN_RATIO * (high - low)
            left_nll = objective(left)
        else:
            low, left, left_nll = left, right, right_nll
            right = low + _GOLDEN_RATIO * (high - low)
            right_nll = objective(right)
    temperature = math.exp((low + high) / 2.0)

    if temperature <= MIN_TEMPERATURE * (1 + 1e-3):
        warnings.warn(
            f"fitted temperature reached the lower bound {MIN_TEMPERATURE}: the logits separate "
            "the labels perfectly, so the NLL keeps falling as T -> 0; use a larger dev split",
            RuntimeWarning,
            stacklevel=2,
        )
    elif temperature >= MAX_TEMPERATURE * (1 - 1e-3):
        warnings.warn(
            f"fitted temperature reached the upper bound {MAX_TEMPERATURE}: the logits rank the "
            "true class below average, so uniform probabilities fit best; check the labels",
            RuntimeWarning,
            stacklevel=2,
        )
    return temperature


def reliability_diagram(
    probs: Any,
    y_true: Any,
    path: str | Path,
    *,
    n_bins: int = 15,
    title: str = "Reliability diagram",
) -> Path:
    """Write a reliability diagram of top-label confidence as a PNG file.

    The upper panel shows the accuracy of each equal-width confidence bin
    against the diagonal of perfect calibration, with the gap to the bin's
    mean confidence shaded. The lower panel shows the number of examples per
    bin. The title carries the ECE. The figure is drawn on its own Agg canvas,
    so pyplot's global state and the process's backend stay untouched.

    Parameters
    ----------
    probs : array of shape (n_examples, n_classes)
    y_true : array of shape (n_examples,)
    path : str or Path
        Output file; missing parent folders are created.

    Returns
    -------
    Path of the written file.
    """
    bins = calibration_bins(probs, y_true, n_bins)
    ece = expected_calibration_error(probs, y_true, n_bins)
    centers = (bins.edges[:-1] + bins.edges[1:]) / 2.0
    width = 1.0 / n_bins
    filled = bins.counts > 0

    figure = Figure(figsize=(5.5, 6.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})

    top.bar(
        centers[filled],
        bins.accuracy[filled],
        width=width,
        color="tab:blue",
        edgecolor="black",
        label="Accuracy",
    )
    # A bar from the accuracy to the mean confidence: above the blue bar when
    # the model is overconfident in that bin, inside it when underconfident.
    top.bar(
        centers[filled],
        (bins.mean_confidence - bins.accuracy)[filled],
        bottom=bins.accuracy[filled],
        width=width,
        color="tab:red",
        alpha=0.35,
        hatch="//",
        edgecolor="tab:red",
        label="Gap to mean confidence",
    )
    top.plot([0.0, 1.0], [0.0, 1.0], linestyle="--", color="gray", label="Perfect calibration")
    top.set_xlim(0.0, 1.0)
    top.set_ylim(0.0, 1.0)
    top.set_ylabel("Accuracy")
    top.legend(loc="upper left")
    top.set_title(f"{title}\nECE {ece:.4f} ({n_bins} bins, {int(bins.counts.sum())} examples)")

    bottom.bar(centers, bins.counts, width=width, color="gray", edgecolor="black")
    bottom.set_xlabel("Top-label confidence")
    bottom.set_ylabel("Examples")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def reliability_diagrams(
    logits: Any,
    y_true: Any,
    temperature: float,
    directory: str | Path,
    n_bins: int = 15,
) -> tuple[Path, Path]:
    """Write ``reliability_before.png`` (T = 1) and ``reliability_after.png`` (fitted T).

    Returns
    -------
    (before, after) : paths of the two files inside ``directory``.
    """
    directory = Path(directory)
    before = reliability_diagram(
        softmax(logits),
        y_true,
        directory / "reliability_before.png",
        n_bins=n_bins,
        title="Before temperature scaling (T = 1)",
    )
    after = reliability_diagram(
        softmax(logits, temperature),
        y_true,
        directory / "reliability_after.png",
        n_bins=n_bins,
        title=f"After temperature scaling (T = {temperature:.3f})",
    )
    return before, after


def calibrate(logits_dev: Any, y_dev: Any, *, n_bins: int = 15, enabled: bool = True) -> dict[str, Any]:
    """Fit the temperature on the dev split and measure ECE and NLL before and after.

    Parameters
    ----------
    logits_dev : array of shape (n_examples, n_classes)
    y_dev : array of shape (n_examples,)
    n_bins : int
        Equal-width bins of the ECE.
    enabled : bool
        When false, T stays 1 and the after values equal the before values.

    Returns
    -------
    dict
        ``{"temperature", "ece_before", "ece_after", "nll_before",
        "nll_after", "n_examples"}``, all measured on the dev split. NLL is
        in nats per example.
    """
    logits_dev = check_logits(logits_dev, "logits_dev")
    temperature = fit_temperature(logits_dev, y_dev) if enabled else 1.0
    before = softmax(logits_dev)
    after = softmax(logits_dev, temperature)
    return {
        "temperature": float(temperature),
        "ece_before": expected_calibration_error(before, y_dev, n_bins),
        "ece_after": expected_calibration_error(after, y_dev, n_bins),
        "nll_before": negative_log_likelihood(before, y_dev),
        "nll_after": negative_log_likelihood(after, y_dev),
        "n_examples": int(len(logits_dev)),
    }
