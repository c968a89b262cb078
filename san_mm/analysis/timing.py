"""The one timing harness and machine description: what a measured time needs beside it.

Latency is a property of a machine, not of a model: every time san_mm stores (the size table's
``--latency``) or reports (``benchmarks/speed.py``) comes with :func:`machine_info`, and is taken with
:func:`median_seconds`.
"""
import os
import platform

import torch

#: Where Linux names the processor model (``platform.processor()`` there is
#: the architecture at most: two different x86_64 CPUs would look alike).
CPUINFO_PATH = '/proc/cpuinfo'


def processor_name() -> str:
    """The processor's model name (``/proc/cpuinfo``'s first ``model name``,
    e.g. ``'AMD EPYC'``), else ``platform.processor()``, else the
    architecture (``'x86_64'``)."""
    try:
        with open(CPUINFO_PATH) as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(':')
                if key.strip() == 'model name' and value.strip():
                    return value.strip()
    except OSError:  # not Linux, or no /proc
        pass
    return platform.processor() or platform.machine()


def machine_info(device=None) -> dict:
    """The machine a latency was measured on: platform, processor, CPU
    count, torch version, intra-op threads and device (plain data)."""
    device = torch.device(device or 'cpu')
    name = 'cpu'
    if device.type == 'cuda':
        name = f'cuda: {torch.cuda.get_device_name(device)}'
    elif device.type != 'cpu':
        name = str(device)
    return dict(platform=platform.platform(),
                processor=processor_name(),
                cpus=os.cpu_count() or 0, torch=str(torch.__version__),
                threads=torch.get_num_threads(), device=name)


def describe_machine(info: dict) -> str:
    """One line for a :func:`machine_info` dict."""
    return (f"{info.get('device', '?')} ({info.get('processor', '?')}, "
            f"{info.get('cpus', '?')} CPUs, {info.get('threads', '?')} "
            f"threads), {info.get('platform', '?')}, torch "
            f"{info.get('torch', '?')}")


def median_seconds(fn, min_run_time: float = 0.5) -> float:
    """Median seconds per call of ``fn`` (no arguments): torch.utils.benchmark's
    ``Timer.blocked_autorange`` (repeated blocks of calls, CUDA synchronised
    around each) with this process's thread count."""
    from torch.utils.benchmark import Timer
    timer = Timer('fn()', globals=dict(fn=fn),
                  num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median
