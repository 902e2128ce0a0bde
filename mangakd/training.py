"""The training loop shared by teacher fine-tuning and distillation.

``mangakd.stages`` calls ``fit`` with a prepared model and data. The loop
pads each batch only to its longest text and warms the learning rate up
linearly before decaying it linearly. It writes a checkpoint after every
epoch and resumes from the last one, so a Job killed mid-epoch loses at
most that epoch.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mangakd.losses import distillation_loss, hidden_state_loss

log = logging.getLogger(__name__)


@dataclass
class TrainSettings:
    """Optimiser and schedule settings, from ``FinetuneSpec`` or ``DistillationSpec``."""

    epochs: int
    learning_rate: float
    batch_size: int
    max_length: int
    warmup_ratio: float
    weight_decay: float
    seed: int
    # A freshly initialised classification head learns faster at a higher rate.
    head_learning_rate: float | None = None


@dataclass
class DistillTargets:
    """Soft targets of distillation, used besides the gold labels."""

    teacher_logits: np.ndarray  # (n, num_labels), cached before training
    temperature: float
    alpha: float
    # For the optional hidden-state loss: the teacher runs alongside the student.
    teacher_model: torch.nn.Module | None = None
    layer_map: list[int] | None = None
    hidden_weight: float = 0.0


@dataclass
class TrainResult:
    """Per-epoch history and totals of one ``fit`` call."""

    history: list[dict] = field(default_factory=list)
    resumed_from_epoch: int = 0
    seconds: float = 0.0


def set_seed(seed: int) -> None:
    """Seed torch and numpy so that runs on one machine repeat exactly."""
    torch.manual_seed(seed)
    np.random.seed(seed)


def tokenize(tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    """Tokenise without padding, so that each batch can be padded to its own longest text."""
    encoded = tokenizer(texts, truncation=True, max_length=max_length, padding=False)
    return encoded["input_ids"]


def pad_batch(token_ids: list[list[int]], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest sequence and build the attention mask."""
    width = max(len(ids) for ids in token_ids)
    input_ids = torch.full((len(token_ids), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(token_ids), width), dtype=torch.long)
    for row, ids in enumerate(token_ids):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}


@torch.no_grad()
def compute_logits(
    model: torch.nn.Module,
    tokenizer,
    texts: list[str],
    *,
    max_length: int,
    batch_size: int = 64,
    device: torch.device | None = None,
) -> np.ndarray:
    """Run a classifier over ``texts`` and return logits of shape (n, num_labels).

    Texts are processed in order of length so that padding stays small, and
    the rows are put back in input order.
    """
    device = device or next(model.parameters()).device
    model.eval()
    token_ids = tokenize(tokenizer, texts, max_length)
    order = np.argsort([len(ids) for ids in token_ids], kind="stable")
    logits = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = pad_batch([token_ids[row] for row in rows], tokenizer.pad_token_id, device)
        logits[rows] = model(**batch).logits.float().cpu().numpy()
    return logits


def _linear_schedule(optimizer, warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _optimizer(model: torch.nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    # Biases and LayerNorm weights are not decayed, as in BERT's original recipe.
    # Head parameters ("classifier", and DistilBERT's "pre_classifier") may get their own rate.
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        is_head = settings.head_learning_rate is not None and "classifier" in name.split(".")[0]
        groups.setdefault((is_head, parameter.ndim >= 2), []).append(parameter)
    param_groups = [
        {
            "params": parameters,
            "lr": settings.head_learning_rate if is_head else settings.learning_rate,
            "weight_decay": settings.weight_decay if decayed else 0.0,
        }
        for (is_head, decayed), parameters in sorted(groups.items())
    ]
    return torch.optim.AdamW(param_groups, lr=settings.learning_rate)


def _save_checkpoint(path: Path, state: dict) -> None:
    # Write then rename, so a kill during the write leaves the previous checkpoint intact.
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def fit(
    model: torch.nn.Module,
    tokenizer,
    texts: list[str],
    label_ids: np.ndarray,
    settings: TrainSettings,
    checkpoint_path: Path,
    *,
    run_key: str,
    targets: DistillTargets | None = None,
    description: str = "train",
    on_step: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place on (texts, label_ids), with cross-entropy or KD loss.

    Parameters
    ----------
    label_ids : ndarray of shape (n,)
    checkpoint_path : Path
        Written after every epoch; when it exists with the same ``run_key``,
        training resumes after its epoch.
    run_key : str
        Identifies the settings and data, so that a checkpoint of another
        configuration is never resumed.
    targets : DistillTargets, optional
        Soft targets for distillation; without them the loss is plain cross-entropy.
    on_step : callable(epoch, step), optional
        Called after every optimiser step (tests use it to interrupt training).
    """
    device = next(model.parameters()).device
    set_seed(settings.seed)
    token_ids = tokenize(tokenizer, texts, settings.max_length)
    labels = torch.as_tensor(label_ids, dtype=torch.long)
    steps_per_epoch = (len(texts) + settings.batch_size - 1) // settings.batch_size
    total_steps = steps_per_epoch * settings.epochs

    optimizer = _optimizer(model, settings)
    scheduler = _linear_schedule(optimizer, int(settings.warmup_ratio * total_steps), total_steps)
    result = TrainResult()

    # Resume after the last finished epoch, if a checkpoint of this configuration exists.
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        if state.get("run_key") == run_key:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["torch_rng"])
            result.history = state["history"]
            result.resumed_from_epoch = state["epoch"]
            log.info("%s: resumed from %s after epoch %d", description, checkpoint_path, state["epoch"])
        else:
            log.warning("%s: ignoring %s, written for other settings or data", description, checkpoint_path)

    if targets is not None and targets.teacher_model is not None:
        targets.teacher_model.eval()
    started = time.perf_counter()
    for epoch in range(result.resumed_from_epoch, settings.epochs):
        model.train()
        # The order depends only on (seed, epoch), so a resumed run gets the same batches.
        order = np.random.default_rng(settings.seed + epoch).permutation(len(texts))
        progress = tqdm(
            total=steps_per_epoch,
            desc=f"{description} epoch {epoch + 1}/{settings.epochs}",
            unit="batch",
            file=sys.stderr,
            mininterval=0.5 if sys.stderr.isatty() else 30.0,
            disable=os.environ.get("MANGAKD_PROGRESS", "1") == "0",
        )
        epoch_started = time.perf_counter()
        loss_sum, seen = 0.0, 0
        for step, start in enumerate(range(0, len(order), settings.batch_size)):
            rows = order[start : start + settings.batch_size]
            batch = pad_batch([token_ids[row] for row in rows], tokenizer.pad_token_id, device)
            batch_labels = labels[rows].to(device)
            loss = _step_loss(model, batch, batch_labels, rows, targets)

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()

            loss_sum += loss.item() * len(rows)
            seen += len(rows)
            rate = seen / max(1e-9, time.perf_counter() - epoch_started)
            progress.set_postfix(loss=f"{loss_sum / seen:.4f}", samples_per_s=f"{rate:.1f}", refresh=False)
            progress.update(1)
            if on_step is not None:
                on_step(epoch, step)
        progress.close()

        elapsed = time.perf_counter() - epoch_started
        record = {"epoch": epoch + 1, "loss": loss_sum / seen, "seconds": elapsed, "samples_per_s": seen / elapsed}
        result.history.append(record)
        log.info("%s: epoch %d/%d loss %.4f, %.1f samples/s", description, epoch + 1, settings.epochs, record["loss"], record["samples_per_s"])
        _save_checkpoint(
            checkpoint_path,
            {
                "run_key": run_key,
                "epoch": epoch + 1,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "history": result.history,
            },
        )

    result.seconds = time.perf_counter() - started
    model.eval()
    return result


def _step_loss(model, batch, batch_labels, rows, targets: DistillTargets | None) -> torch.Tensor:
    want_hidden = targets is not None and targets.hidden_weight > 0 and targets.teacher_model is not None
    outputs = model(**batch, output_hidden_states=want_hidden)
    if targets is None:
        return torch.nn.functional.cross_entropy(outputs.logits, batch_labels)

    teacher_logits = torch.as_tensor(targets.teacher_logits[rows], device=outputs.logits.device)
    loss, _, _ = distillation_loss(outputs.logits, teacher_logits, batch_labels, targets.temperature, targets.alpha)
    if want_hidden:
        with torch.no_grad():
            teacher_outputs = targets.teacher_model(**batch, output_hidden_states=True)
        loss = loss + targets.hidden_weight * hidden_state_loss(
            outputs.hidden_states, teacher_outputs.hidden_states, targets.layer_map, batch["attention_mask"]
        )
    return loss
