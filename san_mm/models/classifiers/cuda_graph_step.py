"""A SAN training step captured once in a CUDA graph and replayed: what a small network's GPU step
costs is the host launching its kernels, not the GPU running them."""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmpretrain.structures import DataSample
from torch import Tensor, nn


def count_backwards(optim_wrapper: OptimWrapper, count: int) -> None:
    """Add ``count`` to the backward passes ``optim_wrapper`` has counted
    (what decides gradient accumulation's steps): for backwards that did not
    go through ``OptimWrapper.backward`` (a replayed graph's), or that must
    not count once each (one iteration back-propagated per size). mmengine
    has no public way to do it; this is the one place that writes its
    counter."""
    optim_wrapper._inner_count += count


class CUDAGraphTrainStep:
    """Every size's forward, the losses and the joint backward of a
    :class:`SANClassifier` training step, captured in one CUDA graph and
    replayed for every later batch of the same shapes; preprocessing and
    the optimiser step stay eager.

    For small networks whose GPU step waits on the host launching kernels
    (the Fashion-MNIST job: docs/performance.md); one replay launches the
    whole step.

    How a step runs:

    1. ``warmup_iters`` eager steps (``OptimWrapper.update_params``, on a side
       stream as PyTorch's whole-network capture recipe does: lazy
       initialisation, cuDNN's choices and the optimiser's state happen
       outside the graph);
    2. the next batch is copied into static tensors, the forward, losses
       and backward are captured (gradients are allocated by the graph, as
       in the recipe), and the graph is replayed for that batch;
    3. each later batch of the same shapes is copied into the static
       tensors, the graph replayed, the parameters pointed at the graph's
       gradients and the optimiser stepped eagerly (so learning-rate
       schedules, gradient clipping and checkpoints work unchanged);
    4. a batch of other shapes (a smaller last batch) runs the eager step.

    With mmengine's ``AmpOptimWrapper`` (``--amp``) the forward runs under
    its autocast and the backward starts from the loss times the loss
    scaler's scale tensor, both captured, as in PyTorch's recipe for CUDA
    graphs with AMP; the scaler's overflow check, step and scale update
    stay eager (they read the GPU's result on the host), and the graph
    reads the updated scale in place on the next replay.

    The graph replays fixed memory addresses: if any parameter or buffer it
    reads is replaced (``model.to()``, ``.data =``) it is captured again
    after another warm-up; in-place changes (the optimiser's step,
    ``load_state_dict``) are what it expects. The log variables returned
    are the graph's output tensors, overwritten by the next replay (the
    runner reads them at once).

    Args:
        model (SANClassifier): The model whose step is captured.
        warmup_iters (int): Eager steps before the capture. Defaults to 3.
    """

    def __init__(self, model: nn.Module, warmup_iters: int = 3):
        if not (isinstance(warmup_iters, int) and warmup_iters >= 1):
            raise ValueError(
                'CUDAGraphTrainStep: warmup_iters must be an int >= 1 (eager '
                'steps before the capture), got '
                f'{warmup_iters!r}')
        self.refuse(self.model_problems(model))
        self.model = model
        self.warmup_iters = warmup_iters
        self.captures = 0  # how often a graph was captured (for tests, logs)
        self._reset()

    @staticmethod
    def _fresh_state() -> dict:
        """The capture's state before any warm-up: no graph, no tensors."""
        return dict(
            _graph=None,  # torch.cuda.CUDAGraph once captured
            _shapes=None,  # what the graph is specialised to (_shapes_of)
            _warm=0,  # eager steps taken at _shapes
            _static_inputs=[],  # the graph's inputs, one per size
            _static_target=None,  # the graph's labels
            _log_vars={},  # detached aliases of the graph's log variables
            _grads=[],  # (parameter, the graph's gradient tensor)
            _loss_scale=None,  # AMP: the scale tensor the graph reads
            # (the module's _parameters / _buffers dict, name, data pointer)
            # of every tensor the model held at the capture
            _addresses=[])

    def _reset(self) -> None:
        self.__dict__.update(self._fresh_state())

    def __getstate__(self) -> dict:
        # A copy (deepcopy for an EMA model, pickling) starts without the
        # graph: it captures its own after its own warm-up.
        return dict(self.__dict__, **self._fresh_state())

    @staticmethod
    def _loss_scale_of(optim_wrapper: OptimWrapper) -> Optional[Tensor]:
        """AMP's scale tensor (what a captured backward multiplies by);
        None for a wrapper without a loss scaler."""
        scaler = getattr(optim_wrapper, 'loss_scaler', None)
        return scaler._scale if scaler is not None else None

    # -------------------------------------------------------------- checks
    @staticmethod
    def model_problems(model: nn.Module) -> List[str]:
        """The model's settings that one fixed graph cannot replay."""
        problems = []
        if model.num_sampled_sizes is not None:
            problems.append(f'num_sampled_sizes={model.num_sampled_sizes} '
                            '(a random subset of sizes per step)')
        if model.backward_per_size:
            problems.append('backward_per_size=True')
        return problems

    @staticmethod
    def refuse(problems: List[str]) -> None:
        if problems:
            raise ValueError(
                'SANClassifier(cuda_graph_step=True) cannot replay a step '
                'with ' + '; '.join(problems) + '; remove it, or set '
                'model.cuda_graph_step=False')

    def check_supported(self, optim_wrapper: OptimWrapper) -> None:
        """Refuse what one fixed graph cannot replay, naming the setting."""
        model = self.model
        problems = self.model_problems(model)
        if type(optim_wrapper) not in (OptimWrapper, AmpOptimWrapper):
            problems.append(f'{type(optim_wrapper).__name__} (only '
                            "mmengine's OptimWrapper and AmpOptimWrapper are "
                            'supported)')
        if getattr(optim_wrapper, '_accumulative_counts', 1) != 1:
            problems.append('gradient accumulation (accumulative_counts='
                            f'{optim_wrapper._accumulative_counts})')
        if model.backbone._compiled_call_impl is not None:
            problems.append('a compiled backbone (compile in the config: '
                            'the graph already removes the launch overhead '
                            'that compile.mode=reduce-overhead targets)')
        self.refuse(problems)
        device = next(model.parameters()).device
        if device.type != 'cuda':
            raise RuntimeError(
                'SANClassifier(cuda_graph_step=True) captures the step in a '
                f'CUDA graph, but the model is on {device}; train on a GPU '
                'or set model.cuda_graph_step=False')

    # ---------------------------------------------------------------- step
    def __call__(self, data: dict,
                 optim_wrapper: OptimWrapper) -> Dict[str, Tensor]:
        """mmengine's ``train_step``: preprocess, forward, backward, step.

        Returns:
            dict[str, Tensor]: The log variables (``loss``,
            ``loss_ce@<size>``, ``loss_kd@<size>``...).
        """
        self.check_supported(optim_wrapper)
        model = self.model
        with optim_wrapper.optim_context(model):
            data = model.data_preprocessor(data, True)
        inputs, samples = data['inputs'], data['data_samples']
        if isinstance(inputs, Tensor):
            inputs = [inputs]
        shapes = self._shapes_of(inputs, samples, optim_wrapper)
        if self._graph is not None:
            if shapes != self._shapes:  # e.g. a smaller last batch
                return self._eager_step(inputs, samples, optim_wrapper)
            if self._tensors_in_place(optim_wrapper):
                return self._replay(inputs, samples, optim_wrapper)
            print_log('cuda_graph_step: a parameter, buffer or loss scale '
                      'was replaced since the capture; capturing the step '
                      f'again after {self.warmup_iters} eager steps',
                      logger='current')
            self._reset()
        if shapes != self._shapes:
            self._shapes, self._warm = shapes, 0
        if self._warm >= self.warmup_iters:
            self._capture(inputs, samples, optim_wrapper)
            return self._replay(inputs, samples, optim_wrapper)
        self._warm += 1
        return self._eager_step(inputs, samples, optim_wrapper,
                                side_stream=True)

    @staticmethod
    def _shapes_of(inputs: Sequence[Tensor], samples: Sequence[DataSample],
                   optim_wrapper: OptimWrapper) -> Tuple:
        """What one graph is specialised to: the inputs' shapes, strides
        and dtype, the batch size and the autocast precision."""
        if any('gt_label' not in s or 'gt_score' in s for s in samples):
            raise ValueError(
                'SANClassifier(cuda_graph_step=True) replays hard labels: '
                'every data sample needs gt_label and no gt_score (soft '
                'targets, e.g. from batch augments); set '
                'model.cuda_graph_step=False for those')
        return (tuple(tuple(x.shape) for x in inputs),
                tuple(x.stride() for x in inputs), inputs[0].dtype,
                len(samples), type(optim_wrapper),
                getattr(optim_wrapper, 'cast_dtype', None))

    def _eager_step(self, inputs, samples, optim_wrapper,
                    side_stream: bool = False) -> Dict[str, Tensor]:
        """mmengine's step (``update_params``) on preprocessed data; on a
        side stream while warming up for the capture."""
        model = self.model

        def step():
            with optim_wrapper.optim_context(model):
                losses = model.loss(inputs, samples)
            loss, log_vars = model.parse_losses(losses)
            optim_wrapper.update_params(loss)
            # Detached: a log variable the runner keeps until the next step
            # would keep this step's autograd graph alive into the capture
            # (autograd warns that it may break it).
            return {key: value.detach() for key, value in log_vars.items()}

        if not side_stream:
            return step()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            log_vars = step()
        torch.cuda.current_stream().wait_stream(stream)
        return log_vars

    def _capture(self, inputs, samples, optim_wrapper: OptimWrapper) -> None:
        model = self.model
        self._static_inputs = [x.clone() for x in inputs]
        self._static_target = torch.cat([s.gt_label for s in samples])
        # The head reads each sample's gt_label: views into the static
        # target, so copying a batch's labels there feeds the graph.
        static_samples = [
            DataSample().set_gt_label(label)
            for label in self._static_target.split(1)
        ]
        params = [p for p in model.parameters() if p.requires_grad]
        for p in params:
            # The graph allocates the gradients (the capture recipe): a
            # replay writes them instead of adding to stale ones.
            p.grad = None
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        # thread_local, as torch.compile's CUDA graphs capture: another
        # thread's CUDA calls meanwhile (a dataloader's pin-memory thread
        # allocating pinned memory) are not part of the step and must not
        # abort its capture.
        scaler = getattr(optim_wrapper, 'loss_scaler', None)  # AMP only
        with torch.cuda.graph(graph, capture_error_mode='thread_local'):
            # optim_context: AMP's autocast (a no-op context otherwise, as
            # accumulation is refused)
            with optim_wrapper.optim_context(model):
                losses = model.loss(self._static_inputs, static_samples)
            loss, log_vars = model.parse_losses(losses)
            # AmpOptimWrapper.backward's scaling, without its step count
            # (the replay counts each step); the scale tensor is read in
            # place, so the eager scale updates reach every replay
            (scaler.scale(loss) if scaler is not None else loss).backward()
        self._loss_scale = self._loss_scale_of(optim_wrapper)
        # Detached aliases of the graph's outputs: kept across steps, they
        # must not keep the captured autograd graph alive (an eager step
        # after it would meet that graph's gradient nodes on another stream).
        self._log_vars = {key: value.detach()
                          for key, value in log_vars.items()}
        self._graph = graph
        self._grads = [(p, p.grad) for p in params if p.grad is not None]
        for p in params:
            p.grad = None
        self._addresses = [
            (tensors, name, tensor.data_ptr())
            for module in model.modules()
            for tensors in (module._parameters, module._buffers)
            for name, tensor in tensors.items() if tensor is not None]
        self.captures += 1
        print_log(f'cuda_graph_step: captured the training step for inputs '
                  f'{[tuple(x.shape) for x in inputs]} after '
                  f'{self._warm} eager steps', logger='current')

    def _tensors_in_place(self, optim_wrapper: OptimWrapper) -> bool:
        """Whether every parameter and buffer of the capture, and AMP's
        loss scale, is still where the graph reads it (buffers added since,
        e.g. calibrated BN statistics, are not read by the graph)."""
        if self._loss_scale_of(optim_wrapper) is not self._loss_scale:
            return False  # another wrapper, or another scale tensor
        for tensors, name, address in self._addresses:
            tensor = tensors.get(name)
            if tensor is None or tensor.data_ptr() != address:
                return False
        return True

    def _replay(self, inputs, samples,
                optim_wrapper: OptimWrapper) -> Dict[str, Tensor]:
        for static, x in zip(self._static_inputs, inputs):
            static.copy_(x)
        self._static_target.copy_(torch.cat([s.gt_label for s in samples]))
        self._graph.replay()
        for p, grad in self._grads:
            p.grad = grad
        count_backwards(optim_wrapper, 1)  # the graph's backward
        if optim_wrapper.should_update():
            optim_wrapper.step()
            optim_wrapper.zero_grad()
        return dict(self._log_vars)
