"""SANClassifier: trains one image at all K sizes at once, with scale distillation."""
import contextlib
import logging
from collections import OrderedDict
from typing import (Callable, Dict, Iterator, List, Optional, Sequence, Tuple,
                    Union)

import torch
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper
from mmpretrain.models import ImageClassifier
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch import Tensor

from ..backbones import BaseScaleAdaptiveBackbone
from ..utils.data_preprocessor import SANDataPreprocessor
from ..utils.plain_init import init_weights_plain_last
from .cuda_graph_step import CUDAGraphTrainStep, count_backwards

LOSS_REDUCTIONS = ('sum', 'mean')

#: oneDNN's AVX2 kernel for 1x1 convolutions computes the weight gradient of
#: a strided one wrong in channels-last memory when it has fewer input
#: channels per group than its block (8), and writes past its workspace
#: (uxlfoundation/oneDNN#6035). Seen with torch 2.14.1 (oneDNN 3.12) on an
#: AVX2 AMD EPYC: relative errors of 0.25-1.0 in such a conv's gradient, and
#: a heap corruption that aborted the process; the forward and the other
#: layers were right. Contiguous memory, or 8 channels, is not affected.
ONEDNN_NHWC_1X1_BLOCK = 8


def convs_hit_by_onednn_nhwc_1x1_bug(model: torch.nn.Module) -> List[str]:
    """The convolutions whose channels-last weight gradient oneDNN's AVX2
    kernel gets wrong (:data:`ONEDNN_NHWC_1X1_BLOCK`): 1x1, strided, fewer
    than 8 input channels per group."""
    return [name for name, module in model.named_modules()
            if isinstance(module, torch.nn.Conv2d)
            and tuple(module.kernel_size) == (1, 1) and max(module.stride) > 1
            and module.in_channels // module.groups < ONEDNN_NHWC_1X1_BLOCK]


@MODELS.register_module()
class SANClassifier(ImageClassifier):
    """Image classifier for scale-adaptive backbones.

    ``loss`` takes a list of batches, one per training size (as produced by
    ``ResolutionSample`` + :class:`SANDataPreprocessor`), runs the network at
    each size (largest first; the backbone picks the kernels and BN of each
    size from the input), and returns cross-entropy at every size plus scale
    distillation between the sizes' logits, each term logged per size:
    ``loss_ce@224``, ``loss_kd@160``, ...

    ``predict`` and ``tensor`` work on a single batch of any size, so
    mmpretrain's inference APIs and evaluators use the model as is.

    Args:
        backbone (dict): A scale-adaptive backbone (``ScaleAdaptive``,
            ``MetaResNet``, ``MetaMobileNetV2``).
        neck, head: As in ``ImageClassifier``.
        distill (dict, optional): Scale distillation loss config. Defaults to
            ``dict(type='ScaleDistillLoss', mode='dense')`` (the reference);
            None disables it.
        loss_reduction (str): ``'sum'`` adds the K cross-entropies and the
            distillation terms (the reference); ``'mean'`` divides the joint
            loss by the number of sizes in the iteration, which keeps the
            gradient scale of a single-size model (more stable with high
            learning rates on small data).
        num_sampled_sizes (int, optional): Cheaper training: per iteration,
            run the largest size plus this many sizes drawn at random from
            the others (the same draw for the whole batch). Each size then
            gets fewer updates (and distillation sees fewer pairs) in exchange
            for less compute. None (default) trains every size every
            iteration, as the reference.
        sandwich (bool): With ``num_sampled_sizes``, train the smallest size
            every iteration too, and draw the ``num_sampled_sizes`` random
            ones from the sizes between (the sandwich rule of US-Nets and
            MutualNet). Defaults to False.
        channels_last (bool): Keep the network's weights and its input
            batches in channels-last memory format (the preprocessor converts
            the inputs): the same results up to float rounding, faster where
            the convolution kernels prefer it (``docs/performance.md``). On an
            AVX2 CPU, oneDNN trains strided 1x1 convs with fewer than 8 input
            channels wrong in this format (:data:`ONEDNN_NHWC_1X1_BLOCK`): the
            model warns, naming them. Defaults to False.
        backward_per_size (bool): Back-propagate each size's loss right
            after its forward (largest first) instead of one backward of the
            joint loss. A size's loss depends only on its own forward
            (teachers' logits are detached), so the gradients are the same,
            but only one size's activations are alive at a time: peak
            training memory drops from about the sum of the K sizes'
            activations to the largest size's. Works with gradient
            accumulation, AMP and DDP; needed for a backbone with gradient
            checkpointing (``with_cp``). Defaults to False.
        batch_kernel_generation (bool): With the joint backward, an eager
            backbone generates each conv's kernels for all the step's sizes
            in one batched op (:meth:`BaseScaleAdaptiveBackbone.step_kernels`)
            instead of one per size: the same gradients up to rounding, fewer
            operations to launch (for GPU steps that wait on kernel launches).
            Defaults to False.
        cuda_graph_step (bool): On a GPU, capture the training step (every
            size's forward, the losses, the backward) in a CUDA graph after
            a few eager steps and replay it for every batch of the same
            shapes (:class:`CUDAGraphTrainStep`); for small networks whose
            step waits on the host launching kernels. Single GPU,
            mmengine's ``OptimWrapper`` or ``AmpOptimWrapper`` without
            gradient accumulation, no ``compile``, ``num_sampled_sizes`` or
            ``backward_per_size``; refused with a message otherwise.
            Defaults to False.
        data_preprocessor (dict, optional): Defaults to
            ``SANDataPreprocessor``; must handle lists of sizes.
        train_cfg (dict, optional): Batch augments are refused (see
            :class:`SANDataPreprocessor`).
        init_cfg (dict, optional): e.g. ``dict(type='PretrainedFromPlain',
            checkpoint=...)`` to start from a plain mmpretrain checkpoint
            (kernels as B with A = 0, BN copied to every set, head kept when
            its shape matches).
    """

    def __init__(self,
                 backbone: dict,
                 neck: Optional[dict] = None,
                 head: Optional[dict] = None,
                 distill: Optional[dict] = dict(type='ScaleDistillLoss',
                                                mode='dense'),
                 loss_reduction: str = 'sum',
                 num_sampled_sizes: Optional[int] = None,
                 sandwich: bool = False,
                 backward_per_size: bool = False,
                 channels_last: bool = False,
                 batch_kernel_generation: bool = False,
                 cuda_graph_step: bool = False,
                 pretrained: Optional[str] = None,
                 train_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if isinstance(data_preprocessor, dict) or data_preprocessor is None:
            data_preprocessor = dict(data_preprocessor or {})
            data_preprocessor.setdefault('type', 'SANDataPreprocessor')
        if loss_reduction not in LOSS_REDUCTIONS:
            raise ValueError(
                f'unknown SANClassifier loss_reduction {loss_reduction!r}; '
                f'expected one of {list(LOSS_REDUCTIONS)}: set '
                "model.loss_reduction to 'sum' (the reference) or 'mean'")
        super().__init__(backbone, neck, head, pretrained, train_cfg,
                         data_preprocessor, init_cfg)
        if not isinstance(self.backbone, BaseScaleAdaptiveBackbone):
            raise TypeError(
                'SANClassifier needs a scale-adaptive backbone, got '
                f'{type(self.backbone).__name__}: wrap it, backbone=dict('
                "type='ScaleAdaptive', backbone=dict(type=...), train_sizes="
                '[...]), or use ImageClassifier for a plain model')
        if not isinstance(self.data_preprocessor, SANDataPreprocessor):
            raise TypeError(
                'SANClassifier needs SANDataPreprocessor (it normalises each '
                'size separately); got '
                f'{type(self.data_preprocessor).__name__}, which would pad '
                'and stack the sizes into one tensor; set '
                "data_preprocessor=dict(type='SANDataPreprocessor', ...) or "
                'leave its type out (SANClassifier defaults to it)')
        num_sizes = len(self.backbone.train_sizes)
        fixed = 2 if sandwich else 1  # the largest (and the smallest) size
        if sandwich and (num_sampled_sizes is None or num_sizes < 2):
            raise ValueError(
                'sandwich=True trains the largest and the smallest size plus '
                'num_sampled_sizes drawn between them: set num_sampled_sizes '
                f'(got {num_sampled_sizes!r}) and at least two train_sizes '
                f'(got {num_sizes})')
        if num_sampled_sizes is not None and not (
                isinstance(num_sampled_sizes, int)
                and 0 <= num_sampled_sizes <= num_sizes - fixed):
            raise ValueError(
                f'num_sampled_sizes must be an int in 0..{num_sizes - fixed} '
                f'(the sizes drawn besides the {fixed} trained every '
                f'iteration of the {num_sizes} train_sizes), got '
                f'{num_sampled_sizes!r}; set it in that range, or to None to '
                'train every size every iteration')
        self.distill = MODELS.build(distill) if isinstance(distill,
                                                           dict) else distill
        self.loss_reduction = loss_reduction
        self.num_sampled_sizes = num_sampled_sizes
        self.sandwich = bool(sandwich)
        self.backward_per_size = bool(backward_per_size)
        if self.backbone.with_checkpointing and not self.backward_per_size:
            raise ValueError(
                'the backbone checkpoints activations (with_cp=True), which '
                'recomputes each block in the backward; with the joint '
                'backward that runs after every size\'s forward, when no '
                "size's state is active: set model.backward_per_size=True "
                '(one backward per size, right after its forward), or '
                'with_cp=False')
        self._warned_joint_backward = False
        self.batch_kernel_generation = bool(batch_kernel_generation)
        # (refuses the settings a fixed graph cannot replay)
        self.cuda_graph_step = CUDAGraphTrainStep(self) \
            if cuda_graph_step else None
        self.channels_last = bool(channels_last)
        if self.channels_last:
            # In place, so initialisation and checkpoint loading (copy_)
            # keep the format.
            self.to(memory_format=torch.channels_last)
            self.data_preprocessor.channels_last = True
            self._warn_if_onednn_trains_it_wrong()

    def _warn_if_onednn_trains_it_wrong(self) -> None:
        if not (torch.backends.mkldnn.is_available()
                and torch.backends.cpu.get_cpu_capability() == 'AVX2'):
            return
        hit = convs_hit_by_onednn_nhwc_1x1_bug(self)
        if hit:
            print_log(
                f'channels_last=True: training on this CPU (AVX2) computes '
                f'wrong weight gradients for {hit} and can corrupt memory: '
                "oneDNN's 1x1 convolution in channels-last memory with "
                f'stride > 1 and fewer than {ONEDNN_NHWC_1X1_BLOCK} input '
                'channels per group (uxlfoundation/oneDNN#6035). Set '
                'channels_last=False, or give those convs at least '
                f'{ONEDNN_NHWC_1X1_BLOCK} input channels. Inference and '
                'training on a GPU are not affected',
                logger='current', level=logging.WARNING)

    def init_weights(self):
        init_weights_plain_last(self, super().init_weights)

    @property
    def train_sizes(self) -> Sequence[int]:
        return self.backbone.train_sizes

    @staticmethod
    def input_size(x: Tensor) -> int:
        """Resolution of a batch: its shorter spatial side."""
        return int(min(x.shape[-2:]))

    def select_sizes(self, inputs: List[Tensor]) -> List[Tensor]:
        """Order the batches largest first and draw the iteration's subset:
        the largest (and with ``sandwich`` the smallest) size, and
        ``num_sampled_sizes`` drawn from the others."""
        inputs = sorted(inputs, key=self.input_size, reverse=True)
        n = self.num_sampled_sizes
        last = len(inputs) - 1 if self.sandwich else len(inputs)
        if n is None or last - 1 <= n:
            return inputs
        drawn = torch.randperm(last - 1)[:n].sort().values + 1
        kept = [0] + drawn.tolist() + ([len(inputs) - 1] if self.sandwich
                                       else [])
        return [inputs[i] for i in kept]

    def forward(self,
                inputs: Union[Tensor, List[Tensor]],
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        if mode == 'tensor' and isinstance(inputs, (list, tuple)):
            return [super(SANClassifier, self).forward(x, mode='tensor')
                    for x in inputs]
        return super().forward(inputs, data_samples, mode)

    def loss(self, inputs: Union[Tensor, List[Tensor]],
             data_samples: List[DataSample]) -> Dict[str, Tensor]:
        """Cross-entropy at every size + scale distillation.

        Args:
            inputs (Tensor | list[Tensor]): One ``(N, C, H, W)`` batch per
                size (any order), or a single batch.
            data_samples (list[DataSample]): Annotations, shared by the sizes.

        Returns:
            dict[str, Tensor]: ``loss_ce@<size>`` for every size,
            ``loss_kd@<size>`` for every distilled size, and the head's
            accuracy terms per size when it computes them.
        """
        # With backward_per_size, train_step never builds the joint loss.
        if self.backward_per_size and not self._warned_joint_backward:
            self._warned_joint_backward = True
            print_log('backward_per_size=True has no effect here: the joint '
                      'loss is built by a caller other than '
                      'SANClassifier.train_step (e.g. a DDP wrapper other '
                      'than SANDistributedDataParallel); gradients are the '
                      'same, memory is not saved. Use model_wrapper_cfg='
                      "dict(type='SANDistributedDataParallel') to save it, or "
                      'set backward_per_size=False to silence this',
                      logger='current', level=logging.WARNING)
        terms = {}
        for _, size_terms in self.losses_per_size(inputs, data_samples,
                                                  joint_backward=True):
            terms.update(size_terms)
        # Cross-entropy terms first, then distillation (log order).
        return dict(sorted(terms.items(), key=lambda kv: 'loss_kd' in kv[0]))

    def losses_per_size(
            self, inputs: Union[Tensor, List[Tensor]],
            data_samples: List[DataSample],
            joint_backward: bool = False
    ) -> Iterator[Tuple[int, Dict[str, Tensor]]]:
        """Run the sizes one by one, largest first, yielding each size's
        loss terms (cross-entropy, head extras, its distillation term)
        right after its forward. A size's terms depend only on its own
        forward: larger sizes' logits are kept detached as teachers.

        With ``joint_backward`` (the caller back-propagates the sum of all
        sizes' terms once) and ``batch_kernel_generation``, an eager backbone
        generates each conv's kernels for all sizes in one batched op
        (``step_kernels``): the same gradients, fewer operations to launch
        per step."""
        if isinstance(inputs, Tensor):
            inputs = [inputs]
        inputs = self.select_sizes(list(inputs))
        sizes = [self.input_size(x) for x in inputs]
        if len(set(sizes)) != len(sizes):
            raise ValueError(
                'each training size must appear once per batch, got inputs '
                f'of sizes {sizes} (shorter sides); pass one batch per '
                'size, as ResolutionSample produces')
        # (a compiled backbone makes each size's kernel in its graph)
        batched = (joint_backward and self.batch_kernel_generation
                   and torch.is_grad_enabled()
                   and not torch.compiler.is_compiling()
                   and self.backbone._compiled_call_impl is None)
        with (self.backbone.step_kernels(sizes) if batched
              else contextlib.nullcontext()):
            yield from self._size_terms(sizes, inputs, data_samples)

    def _size_terms(self, sizes, inputs, data_samples):
        """Each size's forward and loss terms, in order (see
        :meth:`losses_per_size`); the caller's work between two sizes (the
        per-size backward) runs with the size's state active."""
        teachers = []
        for size, x in zip(sizes, inputs):
            with self.backbone.at_size(size):
                cls_score = self.head(self.extract_feat(x))
                terms = {}
                for key, value in self.head._get_loss(cls_score,
                                                      data_samples).items():
                    key = 'loss_ce' if key == 'loss' else key
                    terms[f'{key}@{size}'] = value
                if self.distill is not None:
                    kd = self.distill.student_loss(teachers, cls_score)
                    if kd is not None:
                        terms[f'loss_kd@{size}'] = kd
                teachers.append(cls_score.detach())
                if self.loss_reduction == 'mean':
                    terms = {
                        key: value / len(sizes) if 'loss' in key else value
                        for key, value in terms.items()
                    }
                yield size, terms

    def train_step(self, data: Union[dict, tuple, list],
                   optim_wrapper: OptimWrapper) -> Dict[str, Tensor]:
        """mmengine's train step; with ``backward_per_size``, one backward
        per size (see :meth:`update_per_size`); with ``cuda_graph_step``,
        a replayed CUDA graph (see :class:`CUDAGraphTrainStep`)."""
        if self.cuda_graph_step is not None:
            return self.cuda_graph_step(data, optim_wrapper)
        if not self.backward_per_size:
            return super().train_step(data, optim_wrapper)
        with optim_wrapper.optim_context(self):
            data = self.data_preprocessor(data, True)
        return self.update_per_size(data['inputs'], data['data_samples'],
                                    optim_wrapper)

    def update_per_size(
            self,
            inputs: Union[Tensor, List[Tensor]],
            data_samples: List[DataSample],
            optim_wrapper: OptimWrapper,
            model: Optional[torch.nn.Module] = None,
            reduce_gradients: Optional[Callable[[], None]] = None
    ) -> Dict[str, Tensor]:
        """Forward and backward each size in turn, then step the optimiser
        (when gradient accumulation says so): ``OptimWrapper.update_params``
        for a loss that is a sum of independent per-size terms.

        Args:
            inputs, data_samples: Preprocessed batches (one per size) and
                their annotations.
            optim_wrapper (OptimWrapper): Scales (accumulation, AMP),
                back-propagates and steps.
            model (nn.Module, optional): What ``optim_context`` wraps (the
                DDP wrapper under DDP); defaults to this model.
            reduce_gradients (callable, optional): Called before the
                optimiser step (DDP: averages the gradients over processes).

        Returns:
            dict[str, Tensor]: Log variables, as ``train_step``'s.
        """
        log_vars: Dict[str, Tensor] = OrderedDict(loss=0.0)
        per_size = self.losses_per_size(inputs, data_samples)
        while True:
            with optim_wrapper.optim_context(model or self):
                step = next(per_size, None)
            if step is None:
                break
            loss, size_vars = self.parse_losses(step[1])
            optim_wrapper.backward(optim_wrapper.scale_loss(loss))
            # one iteration, however many sizes it back-propagates
            count_backwards(optim_wrapper, -1)
            for key, value in size_vars.items():
                # Detached: a logged tensor must not keep this size's graph
                # (and activations) alive into the next size's forward.
                log_vars[key] = log_vars.get(key, 0.0) + value.detach()
        count_backwards(optim_wrapper, 1)
        if optim_wrapper.should_update():
            if reduce_gradients is not None:
                reduce_gradients()
            optim_wrapper.step()
            optim_wrapper.zero_grad()
        return log_vars

    def predict(self, inputs: Tensor,
                data_samples: Optional[List[DataSample]] = None, **kwargs):
        if isinstance(inputs, (list, tuple)):
            raise TypeError(
                'SANClassifier.predict takes one batch at one size, got a list '
                f'of {len(inputs)} sizes; evaluate each size separately (the '
                'MultiSizeTestLoop does) or use mode="tensor" for logits of a '
                'list')
        return super().predict(inputs, data_samples, **kwargs)
