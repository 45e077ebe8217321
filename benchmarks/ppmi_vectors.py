"""Build a word vectors file offline: PPMI of window co-occurrences, then a truncated SVD.

No vectors file can be downloaded here, so the `embeddings` comparison in RESULTS.md uses vectors
built by this script from unlabeled text (IMDB's training reviews for the Rotten Tomatoes
sentiment run: other reviews, so nothing of the test set leaks in). Levy & Goldberg (2014):
PPMI with a smoothed context distribution, then SVD, gives vectors comparable to word2vec's.
Writes GloVe's text format (``word v1 ... vd`` per line).

    python benchmarks/ppmi_vectors.py --text ../shared/data/sentiment/imdb/train.csv.gz \\
        --out /tmp/imdb_ppmi_100d.txt [--words 20000] [--dim 100] [--window 5]
"""

from __future__ import annotations

import argparse
import collections
import csv
import gzip
import re
import time

import numpy as np
from common import Timer, say


def texts(path: str) -> list[str]:
    """The ``text`` column of a CSV file (gzip too)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        return [row["text"] for row in csv.DictReader(f)]


def tokens(text: str) -> list[str]:
    # sentiment's standardize (README: sentiment_ids): lowercase, letters and digits, ! ? '
    text = re.sub(r"<br\s*/?>", " ", text.lower())
    text = re.sub(r"[^\w\s!?']|_", " ", text)
    return re.sub(r"([!?])", r" \1 ", text).split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", required=True, help="a CSV file with a text column")
    parser.add_argument("--out", required=True)
    parser.add_argument("--words", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--window", type=int, default=5)
    args = parser.parse_args()
    with Timer() as t:
        docs = [tokens(x) for x in texts(args.text)]
        counts = collections.Counter(w for d in docs for w in d)
        vocab = [w for w, _ in counts.most_common(args.words)]
        index = {w: i for i, w in enumerate(vocab)}
        n = len(vocab)
        codes = []
        for doc in docs:
            ids = np.array([index.get(w, -1) for w in doc], np.int64)
            for k in range(1, args.window + 1):
                a, b = ids[:-k], ids[k:]
                ok = (a >= 0) & (b >= 0)
                codes.append(a[ok] * n + b[ok])
        pairs, counts_of_pairs = np.unique(np.concatenate(codes), return_counts=True)
        rows, cols = pairs // n, pairs % n
        values = counts_of_pairs.astype(np.float64)
        # Symmetric co-occurrences, PPMI with context counts smoothed by 0.75 (Levy et al.).
        rows, cols = np.concatenate([rows, cols]), np.concatenate([cols, rows])
        values = np.concatenate([values, values])
        word_total = np.bincount(rows, values, n)
        context = np.bincount(cols, values, n) ** 0.75
        pmi = np.log(values * context.sum() / (word_total[rows] * context[cols]))
        keep = pmi > 0
        matrix = np.zeros((n, n), np.float32)
        matrix[rows[keep], cols[keep]] = pmi[keep]
        # Randomized truncated SVD (Halko et al.): a few power iterations on an n x 2d sketch.
        rng = np.random.default_rng(0)
        sketch = matrix @ rng.normal(size=(n, 2 * args.dim)).astype(np.float32)
        for _ in range(3):
            sketch = matrix @ (matrix.T @ np.linalg.qr(sketch)[0])
        q = np.linalg.qr(sketch)[0]
        u, s, _ = np.linalg.svd(q.T @ matrix, full_matrices=False)
        vectors = (q @ u[:, : args.dim]) * np.sqrt(s[: args.dim])
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-8
        with open(args.out, "w", encoding="utf-8") as f:
            for word, row in zip(vocab, vectors):
                f.write(word + " " + " ".join(f"{v:.5f}" for v in row) + "\n")
    say(f"{len(docs):,} texts, {sum(map(len, docs)):,} tokens, {n:,} words x {args.dim}")
    say(f"wrote {args.out} in {t.seconds:.1f} s ({time.strftime('%Y-%m-%d')})")


if __name__ == "__main__":
    main()
