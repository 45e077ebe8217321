"""Pretrained word vectors (GloVe, word2vec or fastText text files) for a training vocabulary.

The file is read line by line and only the vocabulary's rows are kept, so a 400,000-word file
costs the vocabulary's memory, not the file's. Formats: ``word v1 ... vd`` per line (GloVe), with
an optional ``count dim`` header line (word2vec and fastText ``.vec``), plain or gzip.
"""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import numpy as np

from lstm_recipes.errors import UserError

_FORMATS = "a text vectors file (GloVe .txt, word2vec or fastText .vec; .gz too)"


@dataclasses.dataclass
class Vectors:
    """Rows of a vectors file for a vocabulary.

    Args:
        matrix: (len(vocabulary), dim) float32; rows of words the file lacks are random, scaled
            like the found rows.
        found: (len(vocabulary),) True where the file had the word (or its lowercase form).
        dim: the vectors' dimension, from the file.
    """

    matrix: np.ndarray
    found: np.ndarray
    dim: int

    def coverage(self) -> dict:
        """How much of the vocabulary the file covered, for the run's report."""
        found = int(self.found.sum())
        share = found / max(len(self.found), 1)
        return {"dim": self.dim, "words": len(self.found), "found": found, "coverage": share}


def _lines(path: Path):
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="strict") as f:
            yield from enumerate(f, 1)
    except UnicodeDecodeError:
        raise UserError(
            f"expected {_FORMATS} at {path}, found bytes that are not UTF-8 text"
        ) from None
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise UserError(f"expected {_FORMATS} at {path}, found an unreadable file: {e}") from None


def load(path: str | Path, vocabulary: list[str], seed: int = 0) -> Vectors:
    """The vectors of ``vocabulary`` from the file at ``path``.

    A word is looked up as it is, then lowercased (GloVe's files are lowercase).

    Args:
        path: the vectors file.
        vocabulary: the words, in id order.
        seed: seeds the rows of words the file lacks.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"expected {_FORMATS} at {path}, found no file there")
    exact = {word: i for i, word in enumerate(vocabulary)}
    lower: dict[str, list[int]] = {}
    for i, word in enumerate(vocabulary):
        lower.setdefault(word.lower(), []).append(i)
    rows: dict[int, np.ndarray] = {}
    by_lower: dict[int, np.ndarray] = {}
    dim = None
    for number, line in _lines(path):
        parts = line.rstrip("\n\r").rstrip(" ").split(" ")
        if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
            dim = int(parts[1])  # the word2vec / fastText header: count, dimension
            continue
        if len(parts) < 2 or not parts[0]:
            if not line.strip():
                continue
            raise UserError(f"expected a word and its numbers on line {number} of {path}")
        if dim is None:
            dim = len(parts) - 1
        if len(parts) - 1 != dim:
            raise UserError(
                f"expected {dim} numbers after the word on line {number} of {path}, found "
                f"{len(parts) - 1} (rows of mixed dimensions)"
            )
        word = parts[0]
        if word not in exact and word.lower() not in lower:
            continue
        try:
            vector = np.asarray(parts[1:], np.float32)
        except ValueError:
            bad = next(p for p in parts[1:] if not _is_number(p))
            raise UserError(
                f"expected numbers after the word on line {number} of {path}, found {bad[:30]!r}"
            ) from None
        if word in exact:
            rows[exact[word]] = vector
        for i in lower.get(word.lower(), []):
            by_lower.setdefault(i, vector)
    if dim is None:
        raise UserError(f"expected {_FORMATS} at {path}, found no vectors in it")
    for i, vector in by_lower.items():
        rows.setdefault(i, vector)
    found = np.zeros(len(vocabulary), bool)
    found[list(rows)] = True
    kept = np.stack(list(rows.values())) if rows else np.zeros((0, dim), np.float32)
    scale = float(kept.std()) if len(kept) else 0.1
    rng = np.random.default_rng(seed)
    matrix = rng.normal(0.0, scale or 0.1, (len(vocabulary), dim)).astype(np.float32)
    for i, vector in rows.items():
        matrix[i] = vector
    return Vectors(matrix, found, dim)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


MATRIX_FILE = "embeddings.npy"


def keep(path: str, vocabulary: list[str], run_dir: Path | None, seed: int = 0) -> dict:
    """Load ``vocabulary``'s vectors, write them to ``run_dir/embeddings.npy`` (ids 0 and 1,
    padding and unknown, first) and return the coverage report for the preprocessing state.

    Args:
        path: the vectors file (``--set embeddings=PATH``).
        vocabulary: the training vocabulary, without the padding and unknown entries.
        run_dir: the run directory (None: a temporary one is not kept; the report only).
        seed: seeds the rows of words the file lacks.
    """
    found = load(path, vocabulary, seed)
    report = {"file": str(Path(path).resolve()), **found.coverage()}
    print(
        f"word vectors: {report['found']:,} of {report['words']:,} training words found "
        f"({report['coverage']:.1%}) in {path}, dimension {found.dim}",
        flush=True,
    )
    if run_dir is not None:
        special = np.zeros((2, found.dim), np.float32)
        matrix = np.concatenate([special, found.matrix])
        np.save(Path(run_dir) / MATRIX_FILE, matrix)
        report["local_file"] = str((Path(run_dir) / MATRIX_FILE).resolve())
    return report


def embedding(
    rows: int, config, report: dict | None, mask_zero: bool = True, name: str | None = None
):
    """The model's word embedding: pretrained (``report`` from ``keep``) or learned.

    Args:
        rows: ids, padding and unknown included.
        config: a config with ``embedding_dim`` and ``train_embeddings``.
        report: ``keep``'s report, or None for ``embedding_dim`` random vectors.
        mask_zero: id 0 pads (a Keras mask follows the embedding).
        name: the layer's name.
    """
    import keras

    if not report:
        return keras.layers.Embedding(rows, config.embedding_dim, mask_zero=mask_zero, name=name)
    # A finished run reopened elsewhere gets its trained weights from the checkpoint: the
    # starting vectors only matter for training, where fit_preprocessing has just written them.
    matrix_file = Path(report.get("local_file", ""))
    initializer = "uniform"
    if report.get("local_file") and matrix_file.is_file():
        initializer = keras.initializers.Constant(np.load(matrix_file))
    return keras.layers.Embedding(
        rows,
        report["dim"],
        mask_zero=mask_zero,
        embeddings_initializer=initializer,
        trainable=config.train_embeddings,
        name=name,
    )
