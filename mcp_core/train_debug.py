"""What ``--train-debug`` prints after every batch: its time, its loss and the memory in use.

CPU memory is the process's resident set (RSS); on CUDA, the memory torch has allocated and the
peak since the run started (``torch.cuda.max_memory_allocated``).
"""

from __future__ import annotations

import psutil
import torch

MiB = float(1 << 20)


def batch_line(epoch: int, batch: int, batches: int, seconds: float, loss: float, device: torch.device) -> str:
    """One debug line for a finished batch (*epoch* and *batch* counted from 1).

    Parameters
    ----------
    seconds
        Wall time of the batch (forward, backward and optimiser step; the loss read back synchronises CUDA).
    device
        Where training runs; CUDA adds allocated and peak memory of that device.
    """
    line = (f"epoch {epoch} batch {batch}/{batches}: {seconds:.3f} s, loss {loss:.4f}, "
            f"RSS {psutil.Process().memory_info().rss / MiB:.0f} MiB")
    if device.type == "cuda":
        line += (f", CUDA allocated {torch.cuda.memory_allocated(device) / MiB:.0f} MiB, "
                 f"peak {torch.cuda.max_memory_allocated(device) / MiB:.0f} MiB")
    return line
