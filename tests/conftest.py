"""Shared fixtures: small slices of real data and a real pre-trained encoder."""

from __future__ import annotations

import pytest
import torch

from mangakd import models
from mangakd.datasets import load_builtin


@pytest.fixture(scope="session")
def clinc_slice():
    """Return 8 CLINC150 intents with 12 training and 4 test texts each."""
    splits = load_builtin("clinc150")
    intents = sorted({example.label for example in splits.train})[:8]

    def take(examples, per_class):
        kept, counts = [], {}
        for example in examples:
            if example.label in intents and counts.get(example.label, 0) < per_class:
                counts[example.label] = counts.get(example.label, 0) + 1
                kept.append(example)
        return kept

    return {"labels": intents, "train": take(splits.train, 12), "test": take(splits.test, 4)}


@pytest.fixture(scope="session")
def minilm_dir():
    """Return the directory of the all-MiniLM-L6-v2 encoder shipped on PyPI."""
    return models.resolve_model_path("all-minilm-l6-v2")


@pytest.fixture()
def one_thread():
    """Run a test on one CPU thread, so floating-point results repeat exactly."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
