"""`finetune check`: what is wrong with the data, before training on it.

finetune check --config configs/textcnn.yaml
finetune check --config configs/textcnn.yaml --output check.json --label_errors --fix data/clean

scan.py          one pass per split: text hashes after the tokenizer's normalisation, labels, token lengths
findings.py      duplicates, leaks between splits, conflicting labels, label counts, lengths
label_errors.py  k-fold out-of-fold probabilities of the TF-IDF baseline, ranked by cleanlab
fix.py           cleaned copies of the files (--fix DIR)
command.py       the command line, the report (text on stderr, JSON with --output), and the short check that
                 starts every ``finetune train``
"""

from finetune.check.command import main, quick_check

__all__ = ["main", "quick_check"]
