"""Near-duplicates (``--near_duplicates``): texts that differ by a few characters, found by MinHash and LSH.

Each text, as the tokenizer normalises it, becomes the set of its character 4-grams; a MinHash signature of 32
values estimates the Jaccard similarity of two such sets by the share of values they agree on. Locality-sensitive
hashing (8 bands of 4 values) puts texts whose signatures agree on a whole band in one bucket, so that only texts
sharing a bucket are compared; a pair counts when its estimated similarity reaches the threshold. Signatures take
128 bytes a row (texts are not kept); pairs that are exact duplicates are left to the exact check.
"""

from __future__ import annotations

import numpy as np

from finetune.check.scan import BATCH_ROWS, text_key_function
from finetune.data.splits import arrow_batches

SHINGLE = 4  # characters per shingle
PERMUTATIONS = 32
BANDS = 8  # of PERMUTATIONS // BANDS values each
PRIME = np.uint64((1 << 61) - 1)
EXAMPLES = 5
TEXTS_PER_BLOCK = 1_000  # texts whose shingles are hashed together (a block's matrix is PERMUTATIONS x shingles)


def shingle_hashes(key: str) -> np.ndarray:
    """64-bit hashes of a text's character 4-grams (the whole text when it is shorter)."""
    codes = np.frombuffer(key.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if len(codes) < SHINGLE:
        codes = np.concatenate([codes, np.zeros(SHINGLE - len(codes), np.uint64)])
    hashes = np.zeros(len(codes) - SHINGLE + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for offset in range(SHINGLE):
            hashes = hashes * np.uint64(1_000_003) + codes[offset : offset + len(hashes)]
    return hashes


def signatures(keys: list[str], seeds: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The MinHash signature (PERMUTATIONS uint32 values) of each text."""
    multipliers, increments = seeds
    result = np.zeros((len(keys), PERMUTATIONS), dtype=np.uint32)
    for start in range(0, len(keys), TEXTS_PER_BLOCK):
        block = [shingle_hashes(key) for key in keys[start : start + TEXTS_PER_BLOCK]]
        sizes = np.fromiter(map(len, block), dtype=np.int64, count=len(block))
        shingles = np.concatenate(block)
        with np.errstate(over="ignore"):
            permuted = (multipliers[:, None] * shingles[None, :] + increments[:, None]) >> np.uint64(32)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        result[start : start + len(block)] = np.minimum.reduceat(permuted, offsets, axis=1).T.astype(np.uint32)
    return result


def band_keys(signature: np.ndarray) -> np.ndarray:
    """One 64-bit key per band of each signature."""
    rows = PERMUTATIONS // BANDS
    keys = np.zeros((len(signature), BANDS), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for band in range(BANDS):
            for column in signature[:, band * rows : (band + 1) * rows].T:
                keys[:, band] = keys[:, band] * np.uint64(0x100000001B3) + column.astype(np.uint64)
    return keys


def candidate_pairs(keys: np.ndarray) -> np.ndarray:
    """Pairs of rows (first, other) that share a band bucket: each member of a bucket paired with its first."""
    pairs = []
    for band in range(keys.shape[1]):
        order = np.argsort(keys[:, band], kind="stable")
        sorted_keys = keys[order, band]
        starts = np.flatnonzero(np.concatenate([[True], sorted_keys[1:] != sorted_keys[:-1]]))
        group = np.repeat(starts, np.diff(np.concatenate([starts, [len(order)]])))
        members = np.flatnonzero(group != np.arange(len(order)))
        pairs.append(np.stack([order[group[members]], order[members]], axis=1))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    found = np.concatenate(pairs)
    found.sort(axis=1)
    return np.unique(found, axis=0)


def near_duplicates(scan, tokenizer, char_level: bool, threshold: float, seed: int = 0) -> dict:
    """Rows with a near-duplicate (estimated Jaccard >= threshold, not an exact duplicate) within each split and
    across splits, with counts and the first examples."""
    generator = np.random.default_rng(seed)
    seeds = (
        generator.integers(1, 1 << 61, PERMUTATIONS, dtype=np.uint64) | np.uint64(1),
        generator.integers(0, 1 << 61, PERMUTATIONS, dtype=np.uint64),
    )
    key_of = text_key_function(tokenizer, char_level)
    raw, names = scan.raw, list(scan.splits)
    parts = []
    for split in names:
        for batch in arrow_batches(raw.splits[split], scan.text_columns, BATCH_ROWS):
            columns = [batch.column(column).to_pylist() for column in scan.text_columns]
            texts = [" ".join(pieces) for pieces in zip(*columns, strict=True)]
            parts.append(signatures([key_of(text) for text in texts], seeds))
    signature = np.concatenate(parts) if parts else np.zeros((0, PERMUTATIONS), np.uint32)
    hashes = np.concatenate([scan.splits[name].hashes for name in names])
    sizes = [len(scan.splits[name].hashes) for name in names]
    split_of = np.repeat(np.arange(len(names)), sizes)
    row_of = np.concatenate([np.arange(size) for size in sizes]) if sizes else np.zeros(0, np.int64)
    pairs = candidate_pairs(band_keys(signature))
    if len(pairs):
        similarity = (signature[pairs[:, 0]] == signature[pairs[:, 1]]).mean(axis=1)
        keep = (similarity >= threshold) & (hashes[pairs[:, 0]] != hashes[pairs[:, 1]])
        keep &= (hashes[pairs[:, 0]] != 0) & (hashes[pairs[:, 1]] != 0)
        pairs, similarity = pairs[keep], similarity[keep]
    else:
        similarity = np.zeros(0)
    found = {}
    for first_index, first in enumerate(names):
        for second_index in range(first_index, len(names)):
            second = names[second_index]
            mask = (split_of[pairs[:, 0]] == first_index) & (split_of[pairs[:, 1]] == second_index)
            if first_index != second_index:
                mask |= (split_of[pairs[:, 0]] == second_index) & (split_of[pairs[:, 1]] == first_index)
            chosen = pairs[mask]
            if first_index == second_index:
                rows = np.unique(chosen[:, 1])  # the later row of each pair
            else:
                rows = np.unique(np.where(split_of[chosen[:, 0]] == second_index, chosen[:, 0], chosen[:, 1]))
            examples = []
            for pair, value in zip(chosen[:EXAMPLES].tolist(), similarity[mask][:EXAMPLES].tolist(), strict=True):
                at: dict[str, list[int]] = {}
                for position in pair:
                    at.setdefault(names[split_of[position]], []).append(int(row_of[position]))
                examples.append({"_rows": at, "similarity": round(value, 3)})
            name = first if first_index == second_index else f"{first}/{second}"
            found[name] = {"rows": len(rows), "examples": examples}
    return {
        "threshold": threshold,
        "method": f"MinHash of character {SHINGLE}-grams, {PERMUTATIONS} values, {BANDS} LSH bands",
        "found": found,
    }
