"""Measure inference latency of exported ONNX classifiers on CPU.

Only the onnxruntime ``run`` call is timed. Tokenisation happens before the
timed region, so these numbers exclude the tokenisation that the inference
server adds on top of every request.

Every session uses the same fixed number of intra-op threads (default: every
core this process may use) and has thread spinning off, because the spinning
threads of one idle session would steal cores from the session being timed.
:func:`compare_latency` interleaves the models iteration by iteration, so load
from other processes hits every model alike.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer

from mangakd.onnx_runtime import check_texts, default_thread_count, encode_for_session, make_session

PathLike = str | os.PathLike[str]


class _Probe:
    """One session with pre-tokenised batches, timed one ``run`` call at a time."""

    def __init__(
        self,
        onnx_path: PathLike,
        tokenizer_dir: PathLike,
        texts: list[str],
        *,
        batch_sizes: Sequence[int],
        max_length: int,
        threads: int,
    ) -> None:
        tokenizer_path = Path(tokenizer_dir)
        if not tokenizer_path.is_dir():
            raise FileNotFoundError(
                f"tokenizer folder {str(tokenizer_path)!r} not found; pass the folder that "
                "AutoTokenizer.save_pretrained wrote"
            )
        self.session = make_session(onnx_path, threads=threads, allow_spinning=False)
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_path))
        input_names = [node.name for node in self.session.get_inputs()]
        self.feeds = {
            batch_size: [
                encode_for_session(tokenizer, batch, input_names, max_length=max_length)
                for batch in _batches(texts, batch_size)
            ]
            for batch_size in batch_sizes
        }
        self.samples_ms: dict[int, list[float]] = {batch_size: [] for batch_size in batch_sizes}

    def run(self, batch_size: int, iteration: int, *, record: bool) -> None:
        feeds = self.feeds[batch_size]
        feed = feeds[iteration % len(feeds)]
        start = time.perf_counter()
        self.session.run(None, feed)
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        if record:
            self.samples_ms[batch_size].append(elapsed_ms)


def _batches(texts: list[str], batch_size: int) -> list[list[str]]:
    """Cut ``texts`` into batches of exactly ``batch_size``, wrapping around to fill the last."""
    count = math.ceil(len(texts) / batch_size)
    return [
        [texts[(index * batch_size + offset) % len(texts)] for offset in range(batch_size)]
        for index in range(count)
    ]


def _statistics(samples_ms: list[float], batch_size: int, threads: int) -> dict[str, float | int]:
    samples = np.asarray(samples_ms, dtype=np.float64)
    mean_ms = float(samples.mean())
    return {
        "p50_ms": float(np.percentile(samples, 50)),
        "p95_ms": float(np.percentile(samples, 95)),
        "mean_ms": mean_ms,
        "throughput_per_s": batch_size * 1000.0 / mean_ms,
        "batch_size": batch_size,
        "iterations": len(samples_ms),
        "threads": threads,
    }


def _check_settings(
    batch_sizes: Sequence[int], warmup: int, iterations: int, max_length: int
) -> None:
    for batch_size in batch_sizes:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch size must be an integer of at least 1, got {batch_size!r}")
    if warmup < 0:
        raise ValueError(f"warmup must be 0 or more iterations, got {warmup}")
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1 token, got {max_length}")


def _resolve_threads(threads: int | None) -> int:
    if threads is None:
        return default_thread_count()
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}; pass None to use every core")
    return threads


def measure_latency(
    onnx_path: PathLike,
    tokenizer_dir: PathLike,
    texts: Sequence[str],
    *,
    batch_size: int,
    warmup: int = 10,
    iterations: int = 100,
    max_length: int = 64,
    threads: int | None = None,
) -> dict[str, float | int]:
    """Time the onnxruntime ``run`` call of one model at one batch size.

    Texts are cut into batches of ``batch_size``, wrapping around the list to
    fill the last one, then tokenised with truncation to ``max_length`` and
    padding to the longest text of each batch. Iteration ``i`` runs batch
    ``i mod number_of_batches``. Tokenisation is outside the timed region.

    Parameters
    ----------
    onnx_path
        ONNX model file.
    tokenizer_dir
        Folder with the model's tokenizer files.
    texts
        Non-empty list of texts to run.
    batch_size
        Texts per ``run`` call.
    warmup
        Untimed calls before measuring, which let onnxruntime allocate its buffers.
    iterations
        Timed calls.
    max_length
        Maximum tokens per text.
    threads
        Intra-op threads. None means every core this process may use.

    Returns
    -------
    dict
        ``p50_ms``, ``p95_ms`` and ``mean_ms``: latency of one ``run`` call in
        milliseconds. ``throughput_per_s``: texts per second at the mean
        latency with one call at a time. ``batch_size``, ``iterations`` and
        ``threads``: the settings used.

    Raises
    ------
    FileNotFoundError
        If the model file or tokenizer folder is missing.
    ValueError
        If ``texts`` is empty or a setting is out of range.
    """
    texts = check_texts(texts)
    _check_settings([batch_size], warmup, iterations, max_length)
    thread_count = _resolve_threads(threads)

    probe = _Probe(
        onnx_path,
        tokenizer_dir,
        texts,
        batch_sizes=[batch_size],
        max_length=max_length,
        threads=thread_count,
    )
    for iteration in range(warmup):
        probe.run(batch_size, iteration, record=False)
    for iteration in range(iterations):
        probe.run(batch_size, iteration, record=True)
    return _statistics(probe.samples_ms[batch_size], batch_size, thread_count)


def compare_latency(
    models: Mapping[str, tuple[PathLike, PathLike]],
    texts: Sequence[str],
    batch_sizes: Sequence[int] = (1, 32),
    *,
    warmup: int = 10,
    iterations: int = 100,
    max_length: int = 64,
    threads: int | None = None,
) -> dict[str, dict[str, dict[str, float | int]]]:
    """Time several models side by side with the same threads and inputs.

    Each iteration runs every model once on the same texts, and the order of
    the models rotates from one iteration to the next. Load from other
    processes then falls on every model alike, and no model always runs
    first. Batching,
    tokenisation and timing are those of :func:`measure_latency`.

    Parameters
    ----------
    models
        Model name to ``(onnx_path, tokenizer_dir)``, for example teacher and student.
    texts
        Non-empty list of texts to run.
    batch_sizes
        Batch sizes to measure, one after another.
    warmup, iterations, max_length, threads
        As in :func:`measure_latency`, applied to every model.

    Returns
    -------
    dict
        ``result[name][f"batch_{b}"]`` is the statistics dict of
        :func:`measure_latency` for model ``name`` at batch size ``b``.

    Raises
    ------
    FileNotFoundError
        If a model file or tokenizer folder is missing.
    ValueError
        If ``models`` or ``texts`` is empty or a setting is out of range.
    """
    if not models:
        raise ValueError("models is empty; pass at least one name -> (onnx_path, tokenizer_dir)")
    if not batch_sizes:
        raise ValueError("batch_sizes is empty; pass at least one batch size, for example (1, 32)")
    texts = check_texts(texts)
    _check_settings(batch_sizes, warmup, iterations, max_length)
    thread_count = _resolve_threads(threads)

    probes = {
        name: _Probe(
            onnx_path,
            tokenizer_dir,
            texts,
            batch_sizes=batch_sizes,
            max_length=max_length,
            threads=thread_count,
        )
        for name, (onnx_path, tokenizer_dir) in models.items()
    }
    names = list(probes)

    for batch_size in batch_sizes:
        for name in names:
            for iteration in range(warmup):
                probes[name].run(batch_size, iteration, record=False)
        for iteration in range(iterations):
            shift = iteration % len(names)
            for name in names[shift:] + names[:shift]:
                probes[name].run(batch_size, iteration, record=True)

    results: dict[str, dict[str, dict[str, float | int]]] = {}
    for name, probe in probes.items():
        results[name] = {
            f"batch_{size}": _statistics(probe.samples_ms[size], size, thread_count)
            for size in batch_sizes
        }
    return results
