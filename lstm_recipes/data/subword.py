"""Subword units: a SentencePiece model learned from the training split, run in the graph.

With ``tokenizer=subword`` a text side is cut into the pieces of a unigram SentencePiece model
(Kudo, 2018) trained on the training texts only, with ``byte_fallback``: a character the
training text never had is spelled as its UTF-8 bytes, so nothing becomes ``[UNK]``. Digits are
single pieces, so numbers are copied digit by digit.

Training uses the ``sentencepiece`` package. The graph (training batches, evaluation, the
exported model) runs tensorflow-text's ``SentencepieceTokenizer``, whose model proto is a graph
constant: the SavedModel holds everything, but whoever loads it needs tensorflow-text's ops
registered (``import tensorflow_text`` in Python; see ``REQUIRES``).

Ids follow the word vocabularies': 0 pads, 1 is unknown, 2 and 3 are the decoder's start and end
markers; pieces follow from 4.
"""

from __future__ import annotations

import base64
import io
import tempfile
from collections.abc import Iterable
from pathlib import Path

import tensorflow as tf

from lstm_recipes.errors import UserError

# What a consumer imports before ``tf.saved_model.load`` (the export's metadata names it).
REQUIRES = "tensorflow_text"
PIECES = ("[PAD]", "[UNK]", "[START]", "[END]")


def _text_ops():
    try:
        import tensorflow_text
    except ImportError as e:
        raise UserError(
            "tokenizer=subword needs the tensorflow-text package (its SentencePiece ops): "
            f"pip install 'tensorflow-text=={tf.__version__.rsplit('.', 1)[0]}.*' ({e})"
        ) from None
    return tensorflow_text


def train(texts: Iterable[str], vocab_size: int, lowercase: bool, seed: int) -> str:
    """A unigram SentencePiece model of ``texts``, base64 (it is kept in preprocessing.json).

    Args:
        texts: the training split's texts of one side.
        vocab_size: pieces including the 4 special ids and 256 byte pieces.
        lowercase: learn from lowercased text (the graph lowercases before cutting too).
        seed: SentencePiece's sampling seed, so a rerun fits the same model.
    """
    try:
        import sentencepiece as spm
    except ImportError as e:
        raise UserError(f"tokenizer=subword needs the sentencepiece package: {e}") from None
    lines = [t.lower() if lowercase else t for t in texts]
    lines = [t for t in lines if t.strip()]
    if not lines:
        raise UserError("tokenizer=subword found no training text to learn pieces from")
    least = len(PIECES) + 256 + 1
    if vocab_size < least:
        raise UserError(
            f"tokenizer=subword needs a vocabulary of at least {least} (4 special ids, 256 byte "
            f"pieces, one more), found {vocab_size}"
        )
    spm.set_random_generator_seed(seed)
    model = io.BytesIO()
    with tempfile.TemporaryDirectory() as folder:
        rules = Path(folder) / "rules.tsv"
        rules.write_text(_SPACES)
        _train(spm, lines, model, vocab_size, str(rules))
    return base64.b64encode(_without_paths(model.getvalue())).decode("ascii")


# Text is taken as it comes, but for no-break spaces, which become spaces: a rule set of its own
# (NFKC would change how a name is spelled: "ﬁ", "①", full-width letters; and an empty rule set
# makes every load of the model log a line).
_SPACES = "A0\t20\n2007\t20\n202F\t20\n"


def _train(spm, lines: list[str], model, vocab_size: int, rules: str) -> None:
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=model,
            vocab_size=vocab_size,
            model_type="unigram",
            character_coverage=1.0,
            byte_fallback=True,
            split_digits=True,
            normalization_rule_tsv=rules,
            pad_id=0,
            unk_id=1,
            bos_id=2,
            eos_id=3,
            pad_piece=PIECES[0],
            unk_piece=PIECES[1],
            bos_piece=PIECES[2],
            eos_piece=PIECES[3],
            # Fewer pieces than asked when a small corpus has no more to give, not an error.
            hard_vocab_limit=False,
            input_sentence_size=2_000_000,
            shuffle_input_sentence=True,
            # One thread: the model is then the same on every rerun and every worker.
            num_threads=1,
            minloglevel=2,
        )
    except RuntimeError as e:
        raise UserError(f"SentencePiece could not learn {vocab_size} pieces: {e}") from None


def _without_paths(proto: bytes) -> bytes:
    # The trainer records the rule file's temporary path: the same data would give another model.
    from sentencepiece import sentencepiece_model_pb2

    spec = sentencepiece_model_pb2.ModelProto.FromString(proto)
    spec.normalizer_spec.ClearField("normalization_rule_tsv")
    return spec.SerializeToString()


def fit(texts: Iterable[str], vocab_size: int, lowercase: bool, seed: int) -> tuple[str, list]:
    """``train``, and the model's pieces from id 2 on (the markers, then the pieces), which is
    how a recipe keeps a word vocabulary.

    Args:
        texts: the training split's texts of one side.
        vocab_size: pieces including the 4 special ids and 256 byte pieces.
        lowercase: learn from lowercased text.
        seed: SentencePiece's sampling seed.
    """
    model = train(texts, vocab_size, lowercase, seed)
    return model, pieces(model)[2:]


def pieces(model: str) -> list[str]:
    """The model's pieces by id (the specials first).

    Args:
        model: a model from ``train``.
    """
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_proto=base64.b64decode(model))
    return [processor.id_to_piece(i) for i in range(processor.get_piece_size())]


class Tokenizer(tf.Module):
    """Text <-> piece ids in graph ops; a callable like a ragged ``TextVectorization``.

    Args:
        model: a model from ``train``.
        lowercase: lowercase before cutting (as the model was trained).
        name: module name.
    """

    def __init__(self, model: str, lowercase: bool, name: str = "subword"):
        super().__init__(name=name)
        text_ops = _text_ops()
        self.lowercase = lowercase
        # Its own name: two tokenizers' resources of one SavedModel were otherwise one after
        # reload (measured: the target side cut with the source's model).
        self.sentencepiece = text_ops.SentencepieceTokenizer(
            model=base64.b64decode(model), out_type=tf.int32, name=name
        )

    def __call__(self, texts) -> tf.RaggedTensor:
        """Ragged int32 piece ids, one row per text."""
        texts = tf.convert_to_tensor(texts, tf.string)
        if self.lowercase:
            texts = tf.strings.lower(texts, encoding="utf-8")
        return self.sentencepiece.tokenize(texts)

    def detokenize(self, ids: tf.RaggedTensor) -> tf.Tensor:
        """One string per row of ragged piece ids (special ids dropped)."""
        ids = tf.ragged.boolean_mask(ids, ids >= len(PIECES))
        return self.sentencepiece.detokenize(tf.cast(ids, tf.int32))
