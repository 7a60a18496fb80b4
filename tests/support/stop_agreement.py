"""Two gloo processes agreeing on a stop signal that only one of them received (test_distributed.py).

:func:`run` starts them with ``torch.multiprocessing`` and returns what each process saw after
``StopOnSignal.on_step_end``: the agreed signal and the Trainer control flags.
"""

from __future__ import annotations

import signal
import socket


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, received_by: int, results) -> None:
    import torch.distributed as dist
    from transformers import TrainerControl

    from nail_segformer.train.stopping import StopOnSignal

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        stopper = StopOnSignal(signals=())  # no handler: the test sets `received` itself
        control = TrainerControl()
        args = type("Args", (), {"device": "cpu"})()
        stopper.on_step_end(args, None, control)  # a step before any signal
        before = (stopper.stop_signal, control.should_save, control.should_training_stop)
        if rank == received_by:
            stopper.received = signal.SIGTERM
        stopper.on_step_end(args, None, control)
        after = (stopper.stop_signal, control.should_save, control.should_training_stop)
        results.put((rank, before, after))
    finally:
        dist.destroy_process_group()


def run(received_by: int = 1, world_size: int = 2) -> dict[int, tuple]:
    """``{rank: (before, after)}``, each ``(stop_signal, should_save, should_training_stop)``."""
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    mp.start_processes(
        _worker,
        args=(world_size, _free_port(), received_by, results),
        nprocs=world_size,
        join=True,
        start_method="spawn",
    )
    out = {}
    for _ in range(world_size):
        rank, before, after = results.get()
        out[rank] = (before, after)
    return out
