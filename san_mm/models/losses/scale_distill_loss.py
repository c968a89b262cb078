"""Scale distillation: smaller input sizes learn from the predictions at larger sizes."""
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS
from torch import Tensor

KD_MODES = ('dense', 'largest', 'none')


@MODELS.register_module()
class ScaleDistillLoss(nn.Module):
    """KL distillation between the logits of the sizes of one image.

    With logits ``z_0 .. z_{K-1}`` ordered largest size first:

    - ``dense`` (the reference's "top-down dense" ``--kd``): size ``j`` learns
      from every larger size ``k < j``:
      ``sum_j sum_{k<j} KL(softmax(z_k / T).detach() || softmax(z_j / T))``;
    - ``largest``: size ``j > 0`` learns from size 0 only;
    - ``none``: no distillation.

    KL uses ``reduction='batchmean'``; teachers are detached; each term is
    multiplied by ``T ** 2`` (so gradients keep their scale for T != 1; the
    reference uses T = 1) and by ``loss_weight``.

    Args:
        mode (str): ``dense``, ``largest`` or ``none``. Defaults to ``dense``.
        temperature (float): Softmax temperature T. Defaults to 1.
        loss_weight (float): Weight of every term. Defaults to 1.

    Example:
        >>> loss = ScaleDistillLoss()
        >>> logits = [torch.randn(4, 10) for _ in range(3)]
        >>> terms = loss(logits, sizes=[224, 192, 160])
        >>> sorted(terms)
        ['loss_kd@160', 'loss_kd@192']
    """

    def __init__(self,
                 mode: str = 'dense',
                 temperature: float = 1.0,
                 loss_weight: float = 1.0):
        super().__init__()
        if mode not in KD_MODES:
            raise ValueError(
                f'unknown ScaleDistillLoss mode {mode!r}; expected one of '
                f"{list(KD_MODES)}: set model.distill.mode ('dense' is the "
                'reference), or model.distill=None for no distillation')
        if not temperature > 0:
            raise ValueError('ScaleDistillLoss: temperature must be '
                             f'positive, got {temperature!r}; set '
                             'model.distill.temperature (1.0 is the '
                             'reference)')
        self.mode = mode
        self.temperature = float(temperature)
        self.loss_weight = float(loss_weight)

    def teachers(self, student: int) -> List[int]:
        """Indices of the sizes that size ``student`` learns from."""
        if self.mode == 'none' or student == 0:
            return []
        return list(range(student)) if self.mode == 'dense' else [0]

    def kl(self, teacher: Tensor, student: Tensor) -> Tensor:
        """``KL(softmax(teacher / T) || softmax(student / T)) * T^2``,
        batch-mean; the teacher gets no gradient."""
        t = self.temperature
        return F.kl_div(
            F.log_softmax(student / t, dim=1),
            F.softmax(teacher.detach() / t, dim=1),
            reduction='batchmean') * (t * t)

    def forward(self, logits: Sequence[Tensor],
                sizes: Sequence[int]) -> Dict[str, Tensor]:
        """Distillation terms, one per student size.

        Args:
            logits (Sequence[Tensor]): ``K`` tensors ``(N, num_classes)``,
                largest size first.
            sizes (Sequence[int]): The ``K`` sizes (for the keys).

        Returns:
            dict[str, Tensor]: ``{'loss_kd@<size>': term}`` for every size
            that has a teacher.
        """
        if len(logits) != len(sizes):
            raise ValueError(
                f'ScaleDistillLoss got {len(logits)} logits for sizes '
                f'{list(sizes)}; pass one logits tensor per size, largest '
                'first')
        terms = {}
        for j in range(1, len(logits)):
            term = self.student_loss(logits[:j], logits[j])
            if term is not None:
                terms[f'loss_kd@{sizes[j]}'] = term
        return terms

    def student_loss(self, larger: Sequence[Tensor],
                     student: Tensor) -> Optional[Tensor]:
        """The distillation term of one student size.

        It depends on the student's logits only (teachers are detached), so
        each size's loss can be back-propagated on its own (see
        ``SANClassifier(backward_per_size=True)``).

        Args:
            larger (Sequence[Tensor]): Logits of every larger size, largest
                first (may be detached already).
            student (Tensor): ``(N, num_classes)`` logits of the student.

        Returns:
            Tensor | None: The weighted term, or None if the student has no
            teacher (the largest size, or ``mode='none'``).
        """
        teachers = self.teachers(len(larger))
        if not teachers:
            return None
        return self.loss_weight * torch.stack(
            [self.kl(larger[k], student) for k in teachers]).sum()
