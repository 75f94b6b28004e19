"""Predict and evaluate across processes: ``accelerate launch`` (or torchrun) starts one process per GPU or CPU
share; each reads the input as a stream, and the chunks of rows are dealt round-robin, chunk ``k`` classified by
process ``k % processes``. After each round the main process gathers the round's results and writes them in input
order, so that the output equals one process's row for row, and every process holds one round of chunks at a
time: memory stays flat in the number of rows.

    accelerate launch --num_processes 4 -m finetune.predict --model outputs/textcnn --input big.jsonl --output out.jsonl
    accelerate launch --num_processes 4 -m finetune evaluate --model outputs/textcnn --test_file test.jsonl

A single process (no launcher) runs every chunk itself, without ``accelerate``'s process group.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator

from finetune.errors import UserError


class Shards:
    """This process's share of the chunks, and the collectives that bring results to the main process."""

    def __init__(self, device: str | None = None):
        self.state = None
        self.rank, self.size = 0, 1
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # started by accelerate launch or torchrun
            import torch
            from accelerate import PartialState

            self.state = PartialState(cpu=device == "cpu" or not torch.cuda.is_available())
            self.rank, self.size = self.state.process_index, self.state.num_processes

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> str | None:
        """Each process's own device (cuda:LOCAL_RANK, or cpu) when several run; else None (predict's default)."""
        return str(self.state.device) if self.state is not None else None

    def check_input(self, path: str) -> None:
        if self.size > 1 and path == "-":
            raise UserError("Standard input is read by one process only; under accelerate launch pass a file.")

    def rounds(self, chunks: Iterable[list]) -> Iterator[tuple[list[list], list | None]]:
        """The chunks in rounds of one per process: (the round's chunks, this process's chunk or None)."""
        chunks = iter(chunks)
        while group := list(itertools.islice(chunks, self.size)):
            yield group, group[self.rank] if self.rank < len(group) else None

    def gather(self, result) -> list | None:
        """Every process's ``result``, in process order, on the main process; None on the others."""
        if self.state is None:
            return [result]
        import torch.distributed as dist

        gathered = [None] * self.size if self.is_main else None
        dist.gather_object(result, gathered, dst=0)
        return gathered

    def close(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()
            self.state.destroy_process_group()
