"""Length-grouped batches in random order, from token lengths that Arrow gives without reading the tokens."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import torch
from datasets import Dataset
from torch.utils.data import Sampler


def token_lengths(dataset: Dataset, column: str = "input_ids") -> np.ndarray:
    """The length of every row's token list, from the list offsets alone (the token ids are never read)."""
    return in_row_order(dataset, pc.list_value_length(dataset.data.column(column)).to_numpy())


def column_array(dataset: Dataset, column: str) -> np.ndarray:
    """A column of scalars (label ids) as one numpy array, without a Python object per row."""
    return in_row_order(dataset, dataset.data.column(column).to_numpy())


def in_row_order(dataset: Dataset, values: np.ndarray) -> np.ndarray:
    """Values of the table's rows, in the dataset's order (after a select or shuffle, through its indices)."""
    indices = getattr(dataset, "_indices", None)
    return values[indices.column(0).to_numpy()] if indices is not None else values


def length_grouped_indices(
    lengths: np.ndarray,
    batch_size: int,
    generator: torch.Generator,
    group_batches: int = 50,
    bucket: int = 1,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """transformers' ``get_length_grouped_indices`` in numpy, the same order from the same generator (with the
    defaults): shuffled, cut into mega-batches of up to ``group_batches`` batches, each sorted by length (longest
    first, ties in shuffled order), and the longest example moved to the very first place. No Python object per
    example.

    ``bucket``: sort by the length rounded up to a multiple of it (the collator's ``pad_to_multiple_of``): the
    padding is the same, and examples of one bucket stay in random order. ``labels``: within each mega-batch,
    order every label's examples by length on their own and interleave them by rank (the k-th shortest of a label
    with n examples sits at (k + 0.5) / n), so that each batch has its mega-batch's mix of labels and lengths
    from the same part of each label's range.
    """
    count = len(lengths)
    mega_batch_size = batch_size * (min(count // (batch_size * 4), group_batches) or 1)
    indices = torch.randperm(count, generator=generator).numpy()
    mega_batch = np.arange(count) // mega_batch_size
    key = -lengths[indices] // max(bucket, 1)  # minus the length rounded up to a multiple of bucket
    # np.lexsort is stable, as Python's sorted(..., reverse=True) is for equal keys.
    indices = indices[np.lexsort((key, mega_batch))]
    if labels is not None:
        _, label_ids = np.unique(labels[indices], return_inverse=True)
        group = mega_batch * (int(label_ids.max()) + 1) + label_ids
        order = np.argsort(group, kind="stable")
        sizes = np.bincount(group)
        starts = np.cumsum(sizes) - sizes
        rank = np.empty(count)
        rank[order] = np.arange(count) - starts[group[order]]
        indices = indices[np.lexsort(((rank + 0.5) / sizes[group], mega_batch))]
    starts = np.arange(0, count, mega_batch_size)
    longest = starts[int(np.argmax(lengths[indices[starts]]))]  # the first of equal maxima, as torch.argmax
    indices[[0, longest]] = indices[[longest, 0]]
    return indices


class ShuffledLengthGroupedSampler(Sampler):
    """Batches of similar lengths, served in random order: each example once per epoch, little padding.

    transformers' LengthGroupedSampler sorts mega-batches of 50 batches by length and serves each one
    from its longest batch to its shortest. Where length goes with the label (long reviews are more
    often positive in the demo corpus), that sweep feeds the optimizer a drifting label mix and
    training goes unstable; shuffling the order of the batches removes the drift and keeps the speed.
    Only the whole batches are shuffled: the partial one (the dataset's size is rarely a multiple of the
    batch size) stays last. Served in the middle, it would shift every later DataLoader batch by its size,
    so that each of them straddled two length groups and was padded to the longer one.
    The order depends only on the seed and the epoch (as in accelerate's SeedableRandomSampler), not on
    torch's global generator: every process draws the same order, and a run resumed mid-epoch draws the
    epoch's order again and skips the batches it has done, so it trains on exactly the same batches.
    """

    def __init__(self, batch_size: int, lengths, seed: int = 0, group_batches: int = 50, bucket: int = 1, labels=None):
        self.batch_size = batch_size
        self.lengths = np.asarray(lengths)
        self.seed = seed
        self.group_batches = group_batches
        self.bucket = bucket
        self.labels = None if labels is None else np.asarray(labels)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer (through accelerate's dataloader) before each epoch."""
        self.epoch = epoch

    def batches(self, epoch: int) -> list[np.ndarray]:
        """The groups of an epoch, in the order they are served."""
        generator = torch.Generator().manual_seed(self.seed + epoch)
        indices = length_grouped_indices(
            self.lengths, self.batch_size, generator, self.group_batches, self.bucket, self.labels
        )
        groups = [indices[start : start + self.batch_size] for start in range(0, len(indices), self.batch_size)]
        whole = len(indices) // self.batch_size
        order = torch.randperm(whole, generator=generator).tolist()
        return [groups[position] for position in order] + groups[whole:]

    def __iter__(self):
        groups = self.batches(self.epoch)
        self.epoch += 1  # a new order on the next pass, also when nobody calls set_epoch
        return map(int, np.concatenate(groups)) if groups else iter([])  # one index at a time, never a list of all
