"""DDP wrapper that keeps SANClassifier's per-size backward under torch.distributed."""
from typing import Dict, Union

import torch
from mmengine.dist import all_reduce_params
from mmengine.model import MMDistributedDataParallel
from mmengine.optim import OptimWrapper
# mmengine's root registry: Runner.wrap_model looks the type up there, without
# searching the scope's child registries.
from mmengine.registry import MODEL_WRAPPERS

BUCKET_MB = 25  # DDP's default bucket size


@MODEL_WRAPPERS.register_module()
class SANDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` that lets a ``SANClassifier`` with
    ``backward_per_size=True`` back-propagate one size at a time.

    DDP reduces gradients from hooks prepared by its own forward, once per
    backward, and expects every parameter to get a gradient in that
    backward; with one backward per size, private BN sets only get
    gradients from their own size. So the per-size step runs under
    ``no_sync()`` and the gradients are averaged over the processes once,
    in buckets, right before the optimiser step (also once per gradient
    accumulation cycle). Without ``backward_per_size`` it is
    ``MMDistributedDataParallel``. ``tools/train.py`` uses it for
    distributed runs unless the config sets ``model_wrapper_cfg``.
    """

    def __init__(self, module: torch.nn.Module, **kwargs):
        if getattr(module, 'cuda_graph_step', None) is not None:
            raise ValueError(
                'SANClassifier(cuda_graph_step=True) captures the step of one '
                'process on one GPU; DDP runs its own step (and reduces '
                'gradients from hooks a replayed graph would skip): set '
                'model.cuda_graph_step=False for distributed training')
        super().__init__(module=module, **kwargs)

    def train_step(self, data: Union[dict, tuple, list],
                   optim_wrapper: OptimWrapper) -> Dict[str, torch.Tensor]:
        if not getattr(self.module, 'backward_per_size', False):
            return super().train_step(data, optim_wrapper)
        with optim_wrapper.optim_context(self):
            data = self.module.data_preprocessor(data, training=True)
        with self.no_sync():
            return self.module.update_per_size(
                data['inputs'], data['data_samples'], optim_wrapper,
                model=self, reduce_gradients=self.average_gradients)

    def average_gradients(self) -> None:
        """All-reduce (mean) every trainable parameter's gradient in buckets
        as DDP's; a missing gradient counts as zero, so all processes reduce
        the same tensors."""
        params = [p for p in self.module.parameters() if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        all_reduce_params([p.grad for p in params], coalesce=True,
                          bucket_size_mb=BUCKET_MB, op='mean')
