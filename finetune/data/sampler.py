"""Length-grouped batches in random order, from token lengths that Arrow gives without reading the tokens."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
from datasets import Dataset
from torch.utils.data import Sampler


def token_lengths(dataset: Dataset, column: str = "input_ids") -> np.ndarray:
    """The length of every row's token list, from the list offsets alone (the token ids are never read)."""
    lengths = pc.list_value_length(dataset.data.column(column)).to_numpy()
    indices = getattr(dataset, "_indices", None)
    return lengths[indices.column(0).to_numpy()] if indices is not None else lengths


class ShuffledLengthGroupedSampler(Sampler):
    """Batches of similar lengths, served in random order: each example once per epoch, little padding.

    As transformers' LengthGroupedSampler: the examples are shuffled, cut into mega-batches of up to 50 batches,
    and each mega-batch is sorted by length and cut into batches. That sampler then serves each mega-batch from
    its longest batch to its shortest; where length goes with the label (long reviews are more often positive in
    the demo corpus), the sweep feeds the optimizer a drifting label mix and training goes unstable. Here the
    whole batches are served in random order instead, the one holding the longest example first (an
    out-of-memory error comes at once), and the partial batch last, so that every batch the DataLoader cuts
    from the order is one of the groups. The order depends only on the seed and the epoch (as in accelerate's
    SeedableRandomSampler), not on torch's global generator: every process draws the same order, and a run
    resumed mid-epoch draws the epoch's order again and skips the batches it has done.
    """

    def __init__(self, batch_size: int, lengths, seed: int = 0):
        self.batch_size = batch_size
        self.lengths = np.asarray(lengths)
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer (through accelerate's dataloader) before each epoch."""
        self.epoch = epoch

    def batches(self, epoch: int) -> list[np.ndarray]:
        """The groups of an epoch, in the order they are served."""
        count, size = len(self.lengths), self.batch_size
        generator = np.random.default_rng([self.seed, epoch])
        mega_batch_size = size * max(1, min(count // (size * 4), 50))
        order = generator.permutation(count)
        # Within each mega-batch, longest first.
        order = order[np.lexsort((-self.lengths[order], np.arange(count) // mega_batch_size))]
        full = count // size
        whole = order[: full * size].reshape(full, size)[generator.permutation(full)]
        if full:
            longest = int(self.lengths[whole].max(axis=1).argmax())
            whole[[0, longest]] = whole[[longest, 0]]
        groups = list(whole)
        if count % size:
            groups.append(order[full * size :])
        return groups

    def __iter__(self):
        groups = self.batches(self.epoch)
        self.epoch += 1  # a new order on the next pass, also when nobody calls set_epoch
        return map(int, np.concatenate(groups)) if groups else iter([])  # one index at a time, never a list of all
