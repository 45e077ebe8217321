"""Translation's vocabularies, fitted on the training pairs only: the most frequent words of
each side, or SentencePiece models (one per side, or one of both with ``shared_vocabulary``);
``fit`` first refuses the options that do not go together.

Apart from ``bitext`` (which reads and splits the pairs) because these need TensorFlow and
that does not.
"""

from __future__ import annotations

from pathlib import Path

from lstm_recipes import seq2seq
from lstm_recipes.data import stream, subword, vectors
from lstm_recipes.data import text as text_lib
from lstm_recipes.errors import UserError


def standardize_of(config):
    """How a translation config cuts words: punctuation split off, lowercased or not.

    Args:
        config: a translation config.
    """
    return text_lib.split_punctuation_lower if config.lowercase else text_lib.split_punctuation


def fit_words(config, train) -> dict:
    """The ``source_vocab`` / ``target_vocab`` most frequent words of the training pairs (a list
    or a ``stream.Stream``); the target's with the decoder's markers first.

    Args:
        config: a translation config (``lowercase``, the vocabulary sizes).
        train: the training pairs.
    """
    standardize = standardize_of(config)
    if isinstance(train, stream.Stream):
        columns = [(0, config.source_vocab, standardize), (1, config.target_vocab - 2, standardize)]
        sample = train.sample(stream.FIT_ROWS)
        (source, target), _ = text_lib.count_vocabularies(sample.batches(), columns)
    else:
        source = text_lib.fit_vocabulary([s for s, _ in train], config.source_vocab, standardize)
        target = text_lib.fit_vocabulary(
            [t for _, t in train], config.target_vocab - 2, standardize
        )
    return {"source_vocabulary": source, "target_vocabulary": seq2seq.MARKERS + target}


def fit_subwords(config, train) -> dict:
    """SentencePiece models of the training pairs, one per side, or with
    ``shared_vocabulary`` one of both sides' text (``source_vocab`` pieces) used for both: a
    name is then cut into the same pieces, with the same ids, in the source and the target.

    Args:
        config: a translation config (``lowercase``, ``seed``, the vocabulary sizes).
        train: the training pairs (a list or a ``stream.Stream``).
    """
    if isinstance(train, stream.Stream):
        sides: tuple[list, list] = ([], [])
        for columns in train.sample(stream.FIT_ROWS).batches():
            sides[0].extend(columns[0])
            sides[1].extend(columns[1])
    else:
        sides = ([s for s, _ in train], [t for _, t in train])
    prep = {"tokenizer": "subword"}
    if config.shared_vocabulary:
        model, vocabulary = subword.fit(
            [*sides[0], *sides[1]], config.source_vocab, config.lowercase, config.seed
        )
        for side in ("source", "target"):
            prep[f"{side}_subword"], prep[f"{side}_vocabulary"] = model, vocabulary
        return {**prep, "shared": True}
    for side, texts, size in (
        ("source", sides[0], config.source_vocab),
        ("target", sides[1], config.target_vocab),
    ):
        model, vocabulary = subword.fit(texts, size, config.lowercase, config.seed)
        prep[f"{side}_subword"], prep[f"{side}_vocabulary"] = model, vocabulary
    return prep


def fit(config, train, run_dir: Path | None = None) -> dict:
    """Translation's ``fit_preprocessing``: the options' combination checked, then words or
    subword models fitted; with ``embeddings``, the source words' vectors kept in ``run_dir``.

    Args:
        config: a translation config.
        train: the training pairs (a list or a ``stream.Stream``).
        run_dir: the run directory, where a vectors file's rows are kept (None: not kept).
    """
    if not 0.0 <= config.name_swap <= 1.0:
        raise UserError(f"expected name_swap from 0 to 1 (a share), found {config.name_swap}")
    if config.name_swap and isinstance(train, stream.Stream):
        raise UserError(
            "expected pairs read into memory with name_swap (it picks names over the whole "
            "training split), found a streamed corpus; add --set name_swap=0"
        )
    if config.copy and not config.shared_vocabulary:
        raise UserError(
            "expected shared_vocabulary=true with copy=true (a copied source piece must be a "
            "target piece), found shared_vocabulary=false"
        )
    if config.tokenizer == "subword":
        if config.embeddings:
            raise UserError(
                "expected tokenizer=words with embeddings (a vectors file holds words), found "
                "tokenizer=subword"
            )
        return fit_subwords(config, train)
    if config.shared_vocabulary:
        raise UserError(
            "expected tokenizer=subword with shared_vocabulary=true (words of two languages "
            "share too little), found tokenizer=words; for words, also --set "
            "shared_vocabulary=false --set copy=false"
        )
    prep = fit_words(config, train)
    if config.embeddings:
        prep["embeddings"] = vectors.keep(
            config.embeddings, prep["source_vocabulary"], run_dir, config.seed
        )
    return prep
