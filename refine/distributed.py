"""Multi-process refine (``accelerate launch -m refine`` or ``torchrun -m refine``): who computes what, who writes.

Every process runs the whole recipe on the same corpus. The rules that keep them in step:

- **Sharded corpus walks.** Feature extraction and relabelling cut the corpus into length-sorted batches and give
  batch ``b`` to process ``b % world_size``. Each process sends back its rows' results with their row indices
  (padded to the longest shard, then trimmed), so :func:`gather_rows` returns every row exactly once, in corpus order,
  identical on every process; an uneven last batch or a process with no batch is fine.
- **One writer.** Only the main process writes files (run directory, caches, iteration folders); the others wait at
  a barrier (:func:`wait_for_everyone`, :func:`main_process_first`) and then read what it wrote.
- **Identical inputs, identical decisions.** Priors, thresholds and labels are computed on every process from the
  gathered scores (the main process's scores are broadcast after the frozen head is trained), so they agree exactly
  without a second broadcast. Annotators that call an LLM (``hf``, ``openai``) run on the main process only; the
  others read its ``labels.parquet``.

With one process (plain ``python -m refine``) every helper here is a no-op and nothing touches torch.distributed.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Iterator

import numpy as np
import torch

logger = logging.getLogger(__name__)

# How long a process waits at a collective. The main process annotates alone with kind hf/openai (hours on a big
# corpus) while the others wait, so the default 30 minutes of torch.distributed is too short; a real hang still ends.
PROCESS_GROUP_TIMEOUT = datetime.timedelta(hours=6)


# The variables a launcher sets, as accelerate reads them: torchrun / accelerate launch, then MPI (Intel, Open MPI,
# MVAPICH) for accelerate's multi-CPU launches through mpirun.
WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
RANK_VARIABLES = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")


def _first_env_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        if os.environ.get(name):
            return int(os.environ[name])
    return default


def launched_world_size() -> int:
    """Processes started by the launcher (``WORLD_SIZE`` or MPI's), 1 for a plain ``python -m refine``."""
    return _first_env_int(WORLD_SIZE_VARIABLES, 1)


def launched_rank() -> int:
    """This process's rank as the launcher set it (0 for a plain run); readable before the process group exists."""
    return _first_env_int(RANK_VARIABLES, 0)


def multi_process_refusal(program: str, command: str) -> str | None:
    """The one-line error for a single-process command under a multi-process launch (every rank would write the same
    files or bind the same port), printed by rank 0 only; None when it may run."""
    if launched_world_size() <= 1:
        return None
    return (f"error: `{program} {command}` runs in one process, not under a {launched_world_size()}-process launch; "
            f"run `python -m {program} {command} ...`")


def _state():
    """accelerate's PartialState, or None in a single-process run (so plain runs never import accelerate state)."""
    if launched_world_size() <= 1:
        return None
    from accelerate import PartialState

    return PartialState(cpu=use_cpu())  # the session's state; outside one, cpu keeps a CPU launch distributed


def use_cpu() -> bool:
    """True without CUDA, or when the launcher asked for CPU (``ACCELERATE_USE_CPU``, set by ``use_cpu: true``)."""
    return os.environ.get("ACCELERATE_USE_CPU", "false").lower() in ("1", "true", "yes") or not torch.cuda.is_available()


@contextlib.contextmanager
def distributed_session(program: str = "refine") -> Iterator[None]:
    """Join the launcher's process group for the duration of a run of ``program``, and leave it at the end.

    The group is created here (gloo on CPU, nccl on GPUs, via accelerate's PartialState) with
    :data:`PROCESS_GROUP_TIMEOUT`, before the Trainer would create it with its 30-minute default. On exit the group is
    destroyed if this session created it, as ``accelerator.end_training()`` does, so torchrun does not abort.
    Non-main processes log warnings only (``program``'s logger).

    Entry points must create the state here, with ``cpu`` set: a bare ``PartialState()`` on a machine without CUDA
    (or under ``use_cpu: true``) comes up as ``DistributedType.NO`` on every process, so each one thinks it is the
    main process and writes the same files.
    """
    if launched_world_size() <= 1:
        yield
        return
    from accelerate import PartialState

    created = not torch.distributed.is_initialized()
    state = PartialState(cpu=use_cpu(), timeout=PROCESS_GROUP_TIMEOUT)
    if state.num_processes != launched_world_size():
        PartialState._reset_state()
        raise ValueError(f"the launcher started {launched_world_size()} processes but accelerate set up "
                         f"{state.num_processes} ({state.distributed_type}); launch with an accelerate_configs/ "
                         "profile (use cpu_multiprocess.yaml for several CPU processes).")
    if not state.is_main_process:
        logging.getLogger(program).setLevel(logging.WARNING)
    logging.getLogger(program).info("%s runs on %d processes (%s, backend %s)", program, state.num_processes,
                                    state.distributed_type, state.backend)
    try:
        yield
    finally:
        if created:
            state.destroy_process_group()
            PartialState._reset_state()


def process_index() -> int:
    state = _state()
    return 0 if state is None else state.process_index


def num_processes() -> int:
    state = _state()
    return 1 if state is None else state.num_processes


def is_main_process() -> bool:
    return process_index() == 0


def device() -> torch.device:
    """This process's device: its GPU under a multi-GPU launch, else cuda:0 if present, else CPU."""
    state = _state()
    if state is not None:
        return state.device
    return torch.device("cuda" if not use_cpu() else "cpu")


def exists_on_main(path) -> bool:
    """Whether ``path`` exists, as the main process sees it, on every process: a resume decision that every process
    shares, so they all take the same branch (and the same collectives) even while the main process writes ``path``."""
    return bool(broadcast_from_main(np.array(os.path.exists(path))))


def wait_for_everyone() -> None:
    state = _state()
    if state is not None:
        state.wait_for_everyone()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """The main process runs the block first (e.g. writes a file); the others run it after, and can read the file."""
    state = _state()
    if state is None:
        yield
    else:
        with state.main_process_first():
            yield


def shard(items: list) -> list:
    """This process's share of ``items``: every ``num_processes``-th item, starting at its index."""
    return items[process_index() :: num_processes()]


def gather_rows(rows: np.ndarray, values: torch.Tensor, num_rows: int) -> torch.Tensor:
    """Assemble per-process results into one tensor of ``num_rows`` rows, identical on every process.

    Args:
        rows: Row indices this process computed, shape ``(n_local,)``; together the processes cover each row of
            ``range(num_rows)`` exactly once.
        values: Their results, shape ``(n_local, *feature_shape)``, any float dtype, on any device.
        num_rows: Total rows.

    Returns:
        Shape ``(num_rows, *feature_shape)``, on the CPU, in row order.

    Raises:
        ValueError: If some row was computed by no process, or by more than one.
    """
    state = _state()
    if state is None:
        gathered_rows, gathered_values = torch.as_tensor(rows, dtype=torch.long), values.detach().cpu()
    else:
        from accelerate.utils import gather, pad_across_processes

        # Pad every shard to the longest (row index -1 marks padding), gather, then drop the padding.
        local_rows = torch.as_tensor(rows, dtype=torch.long, device=state.device)
        local_values = values.detach().to(state.device)
        gathered_rows = gather(pad_across_processes(local_rows, dim=0, pad_index=-1)).cpu()
        gathered_values = gather(pad_across_processes(local_values, dim=0)).cpu()
        keep = gathered_rows >= 0
        gathered_rows, gathered_values = gathered_rows[keep], gathered_values[keep]
    counts = torch.bincount(gathered_rows, minlength=num_rows)
    if len(counts) != num_rows or not bool((counts == 1).all()):
        raise ValueError(
            f"gathered {len(gathered_rows)} rows for {num_rows}: {int((counts == 0).sum())} missing, "
            f"{int((counts > 1).sum())} duplicated; every process must walk the same batches (same corpus, same order)."
        )
    out = torch.empty((num_rows, *gathered_values.shape[1:]), dtype=gathered_values.dtype)
    out[gathered_rows] = gathered_values
    return out


def broadcast_from_main(array: np.ndarray) -> np.ndarray:
    """The main process's copy of ``array`` on every process (a copy of ``array`` itself with one process)."""
    state = _state()
    if state is None:
        return np.array(array, copy=True)
    from accelerate.utils import broadcast_object_list

    box = [np.asarray(array) if state.is_main_process else None]
    broadcast_object_list(box, from_process=0)
    return np.array(box[0], copy=True)
