"""README's plain-Python ``sentiment_ids`` against the SavedModel's TensorFlow tokenizer.

An app feeding sentiment's LiteRT file tokenizes with the README's function; this counts the
texts of a CSV file (``text`` column, gzip too) on which its ids differ from the recipe's
``TextVectorization`` (vocabulary fitted on the first half of the texts, max_length 1000).

    python benchmarks/tokenizer_parity.py --csv ../shared/data/sentiment/imdb/test.csv.gz
"""

from __future__ import annotations

import argparse
import csv
import gzip
import re

from common import REPO, Timer, say


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", required=True)
    args = parser.parse_args()
    import tensorflow as tf

    from lstm_recipes.data import text as text_lib

    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    code = next(b for b in blocks if "def sentiment_ids(" in b)
    namespace: dict = {}
    exec(code.split("\nvocabulary = ")[0], namespace)  # the function, not the app's calls
    opener = gzip.open if args.csv.endswith(".gz") else open
    with opener(args.csv, "rt", encoding="utf-8", newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    with Timer() as t:
        vocabulary = text_lib.fit_vocabulary(texts[: len(texts) // 2], 20000)
        vectorizer = text_lib.make_vectorizer(vocabulary)
        lines = ["[PAD]", "[UNK]", *vocabulary]  # vocabulary.txt
        differ = 0
        for start in range(0, len(texts), 1000):
            chunk = texts[start : start + 1000]
            for text, row in zip(chunk, vectorizer(tf.constant(chunk)).numpy()):
                want = row.tolist()[:1000] or [0]
                differ += want != namespace["sentiment_ids"](text, lines, 1000)
    say(f"{len(texts):,} texts from {args.csv}: ids differ on {differ} ({t.seconds:.0f} s)")


if __name__ == "__main__":
    main()
