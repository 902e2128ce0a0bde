"""Knowledge-distillation losses.

Called by ``mangakd.training`` once per optimiser step. Every function takes
student tensors first and documents the shapes it expects.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_target_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Compute T^2 * KL(softmax(z_t / T) || softmax(z_s / T)), averaged over the batch.

    Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network"
    (2015). The T^2 factor keeps the gradient scale of the soft term
    independent of T, so alpha means the same thing at every temperature.

    Parameters
    ----------
    student_logits, teacher_logits : Tensor of shape (batch, num_labels)
    temperature : float, > 0
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    student_log_probs = F.log_softmax(student_logits / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits / temperature, dim=-1)

    # KL(p_t || p_s) = sum p_t (log p_t - log p_s); log_target avoids log(0).
    divergence = F.kl_div(student_log_probs, teacher_log_probs, reduction="batchmean", log_target=True)
    return divergence * temperature**2


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Compute alpha * T^2 * KL(teacher || student) + (1 - alpha) * CE(labels, student).

    Parameters
    ----------
    student_logits, teacher_logits : Tensor of shape (batch, num_labels)
    labels : LongTensor of shape (batch,)
        Gold class ids.
    temperature : float, > 0
    alpha : float in [0, 1]
        Weight of the soft-target term.

    Returns
    -------
    total, soft, hard : scalar Tensors
        The weighted loss and its two unweighted terms, for logging.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ in shape; both models need the same label map"
        )
    soft = soft_target_loss(student_logits, teacher_logits, temperature)
    hard = F.cross_entropy(student_logits, labels)
    total = alpha * soft + (1.0 - alpha) * hard
    return total, soft, hard


def hidden_state_loss(
    student_hidden: tuple[torch.Tensor, ...],
    teacher_hidden: tuple[torch.Tensor, ...],
    layer_map: list[int],
    attention_mask: torch.Tensor,
) -> torch.Tensor:
    """Compute the mean squared error between student layers and the teacher layers they copy.

    Used for students initialised from a subset of teacher layers, in the
    manner of DistilBERT's cosine loss and TinyBERT's hidden-state loss, but
    with MSE over non-padding tokens only.

    Parameters
    ----------
    student_hidden : tuple of Tensors of shape (batch, seq, hidden)
        ``output_hidden_states`` of the student: embeddings, then one per layer.
    teacher_hidden : tuple of Tensors of shape (batch, seq, hidden)
        The same for the teacher.
    layer_map : list of int
        ``layer_map[j]`` is the 0-based teacher layer copied into student layer j.
    attention_mask : Tensor of shape (batch, seq)
    """
    if len(student_hidden) != len(layer_map) + 1:
        raise ValueError(
            f"student has {len(student_hidden) - 1} layers but layer_map has {len(layer_map)} entries"
        )
    mask = attention_mask.unsqueeze(-1).to(student_hidden[0].dtype)
    tokens = mask.sum().clamp(min=1.0)

    losses = []
    for student_index, teacher_index in enumerate(layer_map):
        # Index 0 of hidden states is the embedding output, so layer j is at j + 1.
        student_states = student_hidden[student_index + 1]
        teacher_states = teacher_hidden[teacher_index + 1]
        squared = (student_states - teacher_states).pow(2) * mask
        losses.append(squared.sum() / (tokens * student_states.shape[-1]))
    return torch.stack(losses).mean()
