"""What tools/train.py and tools/test.py do, kept in the package so it is tested."""
import argparse
import datetime
import gc
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction

from san_mm.datasets import DataNotFoundError
from san_mm.utils import apply_overrides
from san_mm.utils.config_utils import datasets_of

#: What a dataset's folder holds, for the message when it is missing.
DATA_LAYOUTS = dict(
    ImageNet='mmpretrain\'s ImageNet layout: train/ and val/ with one folder '
    'of images per class (or meta/train.txt and meta/val.txt listing them)',
    CustomDataset='one folder per class, each holding its images (e.g. '
    'train/cat/1.png), as mmpretrain\'s CustomDataset reads')


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--work-dir', help='the directory for logs and '
                        'checkpoints (default: ./work_dirs/<config name>)')
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed precision')
    parser.add_argument('--no-pin-memory', action='store_true',
                        help='turn off pin_memory in every dataloader')
    parser.add_argument('--no-persistent-workers', action='store_true',
                        help='turn off persistent_workers in every dataloader')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries, e.g. `test_sizes=[224,192,160]` (a '
        'top-level test_sizes / train_sizes / inference_mode / data_root / '
        'num_classes is carried to the loops, backbone, pipelines, datasets '
        'and head)')
    parser.add_argument(
        '--compile', action='store_true',
        help='torch.compile the model (mmengine\'s `compile` option; SAN '
        'compiles one static graph per input size, evaluation included)')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'],
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def config_with_options(config: str, options) -> Config:
    """The config at path ``config`` with ``options`` applied as the tools'
    ``--cfg-options`` applies them: ``KEY=VALUE`` strings, parsed by the same
    ``DictAction`` and merged with the size overrides carried along. For
    scripts that need what a tool run with those options trains (e.g. its
    batch size) without running it."""
    cfg = Config.fromfile(config)
    if options:
        parser = argparse.ArgumentParser()
        parser.add_argument('--cfg-options', nargs='+', action=DictAction)
        merge_cfg_options(
            cfg, parser.parse_args(['--cfg-options', *options]).cfg_options)
    return cfg


def merge_cfg_options(cfg: Config, options: dict) -> None:
    """Merge parsed ``--cfg-options`` into ``cfg`` and carry a top-level
    ``test_sizes`` / ``train_sizes`` / ``inference_mode`` to the loops,
    backbone and pipelines, as tools/train.py and tools/test.py do."""
    cfg.merge_from_dict(options)
    apply_overrides(cfg, options)


def load_config(args) -> Config:
    """Read the config and apply the arguments shared by train and test."""
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        merge_cfg_options(cfg, args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if getattr(args, 'cuda_graph', False):  # tools/train.py --cuda-graph
        if not torch.cuda.is_available():
            raise ValueError(
                '--cuda-graph captures the training step in a CUDA graph and '
                'needs a GPU; none is available here (torch.cuda.is_available'
                '() is False): train without it')
        cfg.model.cuda_graph_step = True
    setup_distributed(cfg)
    if args.compile and not cfg.get('compile'):
        cfg.compile = True
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(name)
        if not loader:
            continue
        if args.no_pin_memory:
            loader['pin_memory'] = False
        if args.no_persistent_workers or loader.get('num_workers', 1) == 0:
            # persistent workers without workers raises in the DataLoader
            loader['persistent_workers'] = False
    return cfg


def setup_distributed(cfg: Config) -> None:
    """Prepare a distributed run (``--launcher pytorch|slurm|mpi``).

    The model is wrapped in :class:`~san_mm.engine.SANDistributedDataParallel`
    (mmengine's DDP wrapper that also supports
    ``SANClassifier(backward_per_size=True)``) unless the config sets
    ``model_wrapper_cfg``. Without CUDA, ``--launcher pytorch`` (torchrun)
    runs on CPU processes: mmengine's launcher calls ``torch.cuda.set_device``
    and uses NCCL, and its DDP wrapper gets ``device_ids``, all of which fail
    on CPU; so this initialises the process group itself with ``gloo``
    (mmengine then skips its own initialisation), switches an ``nccl``
    backend in ``env_cfg.dist_cfg`` to ``gloo`` and wraps without
    ``device_ids``.

    Raises:
        ValueError: without CUDA, for another launcher or for ``sync_bn``
            (torch's SyncBatchNorm only runs on GPUs); for
            ``model.cuda_graph_step`` (one GPU only).
    """
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none':
        return
    if cfg.get('model', {}).get('cuda_graph_step'):
        raise ValueError(
            f'model.cuda_graph_step=True (--cuda-graph) captures the step of '
            f'one process on one GPU, but this is a --launcher {launcher} '
            'run, whose DDP wrapper runs its own step; remove it for '
            'distributed training')
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='SANDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    if torch.cuda.is_available():
        cfg.model_wrapper_cfg = wrapper
        return
    if launcher != 'pytorch':
        raise ValueError(
            f'--launcher {launcher} needs CUDA devices; on CPU, start the '
            'processes with torchrun (--launcher pytorch, tools/dist_train.sh)')
    if cfg.get('sync_bn'):
        raise ValueError(
            f'sync_bn={cfg.sync_bn!r} needs CUDA devices: torch\'s '
            'SyncBatchNorm only runs on GPUs. Remove sync_bn for a CPU run '
            '(each process then normalises with its own batch statistics)')
    # mmengine fills in device_ids=[LOCAL_RANK] unless the key is present.
    wrapper.setdefault('device_ids', None)
    cfg.model_wrapper_cfg = wrapper
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    if dist_cfg.get('backend', 'nccl') == 'nccl':
        dist_cfg['backend'] = 'gloo'
    if not torch.distributed.is_initialized():
        options = {k: v for k, v in dist_cfg.items() if k != 'backend'}
        if isinstance(options.get('timeout'), (int, float)):  # as mmengine
            options['timeout'] = datetime.timedelta(seconds=options['timeout'])
        torch.distributed.init_process_group(backend=dist_cfg['backend'],
                                             **options)


def finish_distributed() -> None:
    """End a distributed run: destroy the process groups and join their threads.

    Call it on every rank at the end of a tool that ran distributed, after
    the last reference to the runner is dropped (``del runner``); without a
    process group it does nothing.

    Gloo runs the collectives on worker threads, and a worker drops a finished
    collective, and its tensors, only after the caller's ``wait()`` returned.
    A tensor that still has its Python object takes the GIL to release it, and
    a thread that asks for the GIL while the interpreter shuts down is ended
    by ``pthread_exit`` inside a ``noexcept`` destructor: ``std::terminate``,
    "terminate called without an active exception", SIGABRT after a finished
    run (e.g. rank 1 after the last ``broadcast_object_list`` of the
    evaluation). ``destroy_process_group()`` alone does not help: it only
    unregisters the groups, and the worker threads are joined by the group's
    destructor, when its last reference goes; the runner (the DDP wrapper and
    its reducer) holds references, in reference cycles. So: collect those,
    then drop the last Python reference, whose destructor releases the GIL
    while it joins the threads.
    """
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return
    world = dist.group.WORLD  # keeps the group alive through the collection
    dist.destroy_process_group()
    gc.collect()
    del world  # the last reference: joins the worker threads, GIL released


def check_data_roots(cfg: Config, loaders) -> None:
    """Fail before anything is built when a dataset's ``data_root`` does not
    exist: say where the data is expected, its layout and how to point
    elsewhere (Fashion-MNIST prepares itself, or says so)."""
    for name in loaders:
        for dataset in datasets_of(cfg.get(name)):
            root, kind = dataset.get('data_root'), dataset.get('type', '')
            if not root or osp.isdir(root) or kind == 'FashionMNISTWithVal':
                continue
            layout = DATA_LAYOUTS.get(kind, DATA_LAYOUTS['CustomDataset'])
            raise DataNotFoundError(
                f'{name} reads {kind or "its dataset"} from {root!r}, which '
                f'does not exist. Put the data there ({layout}), or point the '
                'config at it: --cfg-options data_root=/path/to/data')


def run_tool(main) -> None:
    """Run a tool's ``main``; missing data ends it with the message alone
    (exit status 1), without a traceback."""
    try:
        main()
    except DataNotFoundError as error:
        raise SystemExit(f'error: {error}') from None


def train_config(args) -> Config:
    cfg = load_config(args)
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    check_data_roots(cfg, ('train_dataloader', 'val_dataloader'))
    return cfg


def test_config(args) -> Config:
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    check_data_roots(cfg, ('test_dataloader', ))
    if args.out:
        dump = dict(type='DumpResults', out_file_path=args.out)
        evaluator = cfg.test_evaluator
        if isinstance(evaluator, (list, tuple)):
            cfg.test_evaluator = list(evaluator) + [dump]
        else:
            cfg.test_evaluator = [evaluator, dump]
    return cfg
