"""Translation: many-to-many with different lengths. A sentence in, a sentence out.

Encoder: source embedding -> stacked bidirectional LSTM (masked, the fast kernel). Its final
states start the decoder through a small bridge; the decoder is ``attention.AttentionDecoder``:
an LSTM over the target (teacher-forced in training, so it stays on the fast kernel) with
Luong attention after it (``dot`` or ``general``) or Bahdanau's ``additive`` scores.
Search (greedy and beam, ``seq2seq.AttentionSearch``, shared with captioning) is the same
graph function in evaluation and in the exported model.

Run it on the built-in sample (20,000 generated pairs, synthetic: dates written 14 ways in four
languages -> ISO 8601), a few minutes on 2 CPU cores:

    lstm-recipes run translation

Expect exact match 1.00 and BLEU 100 on the 2,000 test dates, greedy and beam (measured in
4 minutes; an easy, synthetic task that shows the machinery works). On the Tatoeba English-Spanish pairs (118,964; 2,000 held out for test):

    lstm-recipes run translation --preset spa-eng \\
        --data ../shared/data/translation/spa-eng/spa-eng.zip

(the same file: https://storage.googleapis.com/download.tensorflow.org/data/spa-eng.zip, the
Tatoeba pairs of the TensorFlow tutorials; README.md says more.)

Expect BLEU about 43 with beam search (measured 43.08; greedy 41.39) on the 2,000 test pairs,
none of whose source sentences is in training (``split_by=source``), after 42 minutes of
training on 2 CPU cores, and unseen names copied (91% of 282 probes; benchmarks/RESULTS.md).
The preset uses 8,000 subword pieces shared by both sides, the copy pointer and name_swap;
without the last three (``--set shared_vocabulary=false --set copy=false --set name_swap=0``)
it measured 43.56 and copied no name; with words as well (``--set tokenizer=words --set
source_vocab=10000 --set target_vocab=12000`` besides) 40.97.

Tokenizer (``--set tokenizer=``): ``words`` (the default but in ``spa-eng``) keeps the ``source_vocab`` /
``target_vocab`` most frequent words and reads any other as ``[UNK]``. ``subword`` learns a
SentencePiece unigram model of that many pieces per side from the training split
(``lstm_recipes.data.subword``): an unseen word is spelled from pieces, down to UTF-8 bytes, so
no output holds ``[UNK]``; the exported model then needs tensorflow-text's ops where it is
loaded (Python: ``pip install tensorflow-text`` of TensorFlow's version and ``import
tensorflow_text`` before ``tf.saved_model.load``; the export's metadata lists it under
``requires``). ``--set shared_vocabulary=true`` (with ``subword``) learns one model of
``source_vocab`` pieces from both sides, and encoder and decoder share one embedding: a name is
then the same pieces, with the same vectors, on both sides. ``--set copy=true`` (with the shared
vocabulary) adds a pointer (See et al. 2017): a learned gate mixes the vocabulary's
distribution with the attention weights put on the source's own pieces, so a piece can be
copied that the output layer never learned to write. ``--set name_swap=0.5`` gives half the
training pairs that keep a name on both sides (Tatoeba's "Tom", "Mary") made-up names in its
place (``lstm_recipes.data.names``): copying, not memorizing two names, is then what pays.

Export: ``serving_default(text: string[None]) -> {translation: string[None]}`` (beam search,
width ``beam_width``) and ``greedy`` with the same interface. Tokenization and detokenization
are in the graph.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from lstm_recipes import attention, blocks, cells, distribute, metrics, plots, seq2seq, training
from lstm_recipes.data import (
    Splits,
    bitext,
    names,
    pair_vocabulary,
    reading,
    stream,
    subword,
    vectors,
)
from lstm_recipes.data import text as text_lib
from lstm_recipes.errors import UserError
from lstm_recipes.export import Serving
from lstm_recipes.precision import DecodePrecision, Precision

TOPOLOGY = "many-to-many (encoder-decoder)"
DATA_FORMS = {
    "builtin": "20,000 generated pairs (synthetic): dates written 14 ways in English, Spanish, "
    "French and German -> ISO 8601",
    "tfds:NAME": "a TFDS translation dataset, e.g. tfds:ted_hrlr_translate/pt_to_en "
    "(its supervised keys, or source_column/target_column)",
    "FILE.txt|.tsv|.zip[.gz]": "source<TAB>target[<TAB>attribution] per line (Anki/Tatoeba)",
    "SOURCE_FILE,TARGET_FILE": "two line-aligned files, e.g. train.en,train.de (.gz too)",
    "FILE.jsonl|.csv[.gz]": "one pair per row; keys/columns named by source_column, target_column",
    "'SHARDS-*.tsv.gz'|FOLDER/|.parquet|.tfrecord": "a corpus streamed from shards (headerless "
    ".tsv pairs, CSV/JSONL, Parquet, TFRecord), split by a hash of each pair",
}
NO_LITERT = seq2seq.NO_LITERT  # why `export --format litert` is refused
SIGNATURES = {
    "serving_default": "text: string[None] -> {translation: string[None]} (beam search)",
    "greedy": "text: string[None] -> {translation: string[None]}",
}
MONITOR = "val_loss"
MAIN_METRIC = "bleu_beam"  # the test metric `ablate` compares
# `lstm-recipes tune --space default`.
TUNE_SPACE = ("learning_rate=5e-4..4e-3:log", "encoder_units=64,128,256", "decoder_units=128,256,512", "layers=1,2", "dropout=0.1..0.4", "embedding_dim=64,128,256")  # fmt: skip
PREDICT_EXAMPLE = '"How are you?"'

START, END = seq2seq.START, seq2seq.END


@dataclasses.dataclass(frozen=True)
class Config:
    source_column: str = "source"  # JSONL/CSV key or TFDS feature of the source ("": TFDS's own)
    target_column: str = "target"  # JSONL/CSV key or TFDS feature of the target ("": TFDS's own)
    zip_member: str = ""  # file inside a .zip to read (default: its one pairs file)
    reverse: bool = False  # translate target -> source
    max_examples: int = 0  # use at most this many training pairs (0: all)
    max_length: int = 50  # tokens per sentence: longer training pairs are dropped, inputs cut
    lowercase: bool = True  # lowercase both sides (BLEU is then case-insensitive)
    tokenizer: Literal["words", "subword"] = "words"  # subword: SentencePiece pieces, both sides
    shared_vocabulary: bool = False  # subword: one model and one embedding for both sides
    copy: bool = False  # shared_vocabulary: a pointer that can copy source pieces (names)
    name_swap: float = 0.0  # share of name-keeping training pairs given made-up names (0-1)
    source_vocab: int = 8000  # source words kept (most frequent in training) or pieces learned
    target_vocab: int = 8000  # target words kept or pieces learned, specials included
    embedding_dim: int = 128  # width of both word embeddings (a vectors file sets the source's)
    embeddings: str = ""  # pretrained source word vectors: GloVe/word2vec/fastText text (.gz too)
    train_embeddings: bool = True  # false: keep the pretrained source vectors frozen
    encoder_units: int = 128  # encoder LSTM units per direction
    layers: int = 1  # stacked layers of the bidirectional encoder, and of the decoder
    decoder_units: int = 256  # decoder LSTM units (and attentional vector width)
    cell: cells.Cell = "lstm"  # lstm (fast kernel), a Greff et al. variant, gru, simple_rnn
    attention: Literal["dot", "general", "additive"] = "general"  # Luong dot/general, Bahdanau
    attentional: Literal["linear", "tanh"] = "linear"  # activation of the attentional vector
    dropout: float = 0.2  # dropout on embeddings, between layers and before the logits
    batch_size: int = 64  # sentence pairs per batch
    epochs: int = 10  # most epochs; early stopping may end sooner
    patience: int = 2  # epochs without validation-loss improvement before stopping
    learning_rate: float = 2e-3  # Adam learning rate
    lr_decay: float = 1.0  # learning rate multiplied by this after every epoch
    clipnorm: float = 5.0  # gradient-norm clipping (0: off)
    max_minutes: float = 0.0  # stop training after this many minutes (0: no limit)
    beam_width: int = 4  # beam of evaluation and of the exported serving_default
    length_penalty: float = 0.6  # GNMT length-penalty alpha of the beam search
    validation_size: float = 0.1  # pairs held out for validation: a share (< 1) or a count
    test_size: float = 0.1  # pairs held out for test when no --test-data: a share or a count
    split_by: Literal["source", "pair"] = "source"  # carve splits by source sentence or by pair
    attention_plots: int = 4  # test sentences drawn as attention heatmaps
    seed: int = 42  # seeds the split, shuffling and initial weights
    strategy: distribute.Strategy = "default"  # tf.distribute: default, mirrored, multi-worker, tpu
    precision: Precision = "float32"  # mixed_bfloat16 (CPUs with bf16 instructions) or auto
    decode_precision: DecodePrecision = "float32"  # bfloat16: faster search where the CPU has it
    encoding: str = "utf-8"  # text files' codec (any Python codec: cp1252, latin-1, utf-16, ...)
    decode_errors: reading.DecodeErrors = "strict"  # replace: undecodable bytes -> U+FFFD, counted
    skip_bad_rows: int = 0  # broken rows (or missing images) skipped and reported before refusing


PRESETS = {
    "tiny": Config(
        max_examples=300,
        max_length=12,
        source_vocab=200,
        target_vocab=200,
        embedding_dim=16,
        encoder_units=8,
        decoder_units=16,
        batch_size=32,
        epochs=2,
        beam_width=3,
        attention_plots=1,
    ),
    "default": Config(),
    # English -> Spanish on Tatoeba (spa-eng.zip): a fixed 2,000-pair test split, ~45 min.
    "spa-eng": Config(
        # Subword units: +2.6 BLEU over words (10k / 12k) in the same 42 minutes, no [UNK].
        tokenizer="subword",
        # Shared pieces, a pointer and made-up names: unseen names copied (3% -> 91%), BLEU level.
        shared_vocabulary=True,
        copy=True,
        name_swap=0.5,
        source_vocab=8000,
        target_vocab=8000,
        embedding_dim=256,
        encoder_units=192,
        decoder_units=384,
        dropout=0.2,
        batch_size=64,
        epochs=30,
        patience=2,
        learning_rate=2e-3,
        lr_decay=0.8,
        max_minutes=42.0,
        validation_size=2000,
        test_size=2000,
        # bfloat16 where the CPU has it: 1.28x the examples/s over the whole preset, beam BLEU
        # 43.91 against float32's 44.09 at a lower test loss and a higher greedy BLEU (36.30
        # against 34.28 after 10 minutes; benchmarks/RESULTS.md, "bfloat16"); float32 elsewhere.
        precision="auto",
    ),
}


# ----------------------------------------------------------------------------- data


def load_data(
    config: Config,
    data: str = "builtin",
    test_data: str | None = None,
    validation_data: str | None = None,
) -> Splits:
    """Train/validation/test (source, target) pairs; ``reverse`` swaps the sides."""
    return bitext.load_splits(config, data, test_data, validation_data)


def fit_preprocessing(config: Config, train: list, run_dir: Path | None = None) -> dict:
    """Source and target vocabularies (or subword models), fitted on the training pairs only;
    with ``embeddings``, the source vocabulary's pretrained vectors kept in ``run_dir``. Options
    that do not go together are refused first (``pair_vocabulary.fit``)."""
    return pair_vocabulary.fit(config, train, run_dir)


def _vectorizers(config: Config, prep: dict):
    if config.tokenizer == "subword":
        return (
            subword.Tokenizer(prep["source_subword"], config.lowercase, "source_subword"),
            subword.Tokenizer(prep["target_subword"], config.lowercase, "target_subword"),
        )
    standardize = pair_vocabulary.standardize_of(config)
    return (
        text_lib.make_vectorizer(prep["source_vocabulary"], standardize, "source_vectorizer"),
        text_lib.make_vectorizer(prep["target_vocabulary"], standardize, "target_vectorizer"),
    )


def _encode(config: Config, prep: dict, pairs: list, training: bool):
    source_vec, target_vec = _vectorizers(config, prep)
    cut = config.max_length + 1 if training else config.max_length
    source = text_lib.encode(source_vec, [s for s, _ in pairs], cut)
    target = text_lib.encode(target_vec, [t for _, t in pairs], cut)
    if training:
        # Over-long pairs are dropped rather than cut: a cut target teaches a wrong ending.
        keep = np.flatnonzero(
            (source.row_lengths().numpy() <= config.max_length)
            & (target.row_lengths().numpy() <= config.max_length)
        )
        if len(keep) == 0:
            raise UserError(f"no training pair has at most max_length={config.max_length} tokens")
        source, target = tf.gather(source, keep), tf.gather(target, keep)
    return source, target


def batches(config: Config, prep: dict, pairs, training: bool) -> tf.data.Dataset:
    """Length-bucketed batches of ({source, target_in}, target_out), right-padded with 0."""
    if isinstance(pairs, stream.Stream):
        return seq2seq.streamed_pair_batches(
            pairs.dataset(*distribute.worker_of(config.strategy)),
            *_vectorizers(config, prep),
            config.batch_size,
            config.max_length,
            training=training,
            seed=config.seed,
        )
    if training and config.name_swap:
        pairs = names.swapped(pairs, config.name_swap, config.seed)
    source, target = _encode(config, prep, pairs, training)
    return seq2seq.pair_batches(
        source, target, config.batch_size, config.max_length, training=training, seed=config.seed
    )


# ----------------------------------------------------------------------------- model


def build_model(config: Config, prep: dict) -> keras.Model:
    memory_width = 2 * config.encoder_units
    if config.attention == "dot" and config.decoder_units != memory_width:
        raise UserError(
            f"attention=dot needs decoder_units = 2 x encoder_units ({memory_width}), found "
            f"{config.decoder_units}; set both or use attention=general"
        )
    source = keras.Input((None,), dtype="int32", name="source")
    target_in = keras.Input((None,), dtype="int32", name="target_in")
    source_mask = ops.not_equal(source, 0)
    rows = len(prep["source_vocabulary"]) + 2
    source_embedding = vectors.embedding(
        rows, config, prep.get("embeddings"), False, "source_embedding"
    )
    x = source_embedding(source)
    x = keras.layers.Dropout(config.dropout)(x)
    memory, h, c = blocks.StackedLSTM(
        config.encoder_units,
        config.layers,
        bidirectional=True,
        dropout=config.dropout,
        return_state=True,
        cell=config.cell,
        name="encoder",
    )(x, mask=source_mask)
    # Both through tanh: a linear bridge let the cell state grow to |c| ~ 20, which saturated
    # the decoder and taught it to ignore the source (measured: BLEU < 1 after an epoch).
    h0 = keras.layers.Dense(config.decoder_units, activation="tanh", name="bridge_h")(h)
    c0 = keras.layers.Dense(config.decoder_units, activation="tanh", name="bridge_c")(c)
    logits = attention.AttentionDecoder(
        len(prep["target_vocabulary"]) + 2,
        config.embedding_dim,
        config.decoder_units,
        config.layers,
        attention=config.attention,
        dropout=config.dropout,
        cell=config.cell,
        attentional_activation=config.attentional,
        embedding=source_embedding if prep.get("shared") else None,
        copy=config.copy,
        name="decoder",
    )([target_in, memory, source_mask, h0, c0, *([source] if config.copy else [])])
    model = keras.Model({"source": source, "target_in": target_in}, logits, name="translation")
    model.compile(
        optimizer=training.optimizer(config),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0),
        metrics=[metrics.masked_accuracy],
    )
    return model


def translator(config: Config, model: keras.Model, prep: dict) -> seq2seq.AttentionSearch:
    """Raw text in, text out: vectorize, encode once, search, detokenize; all in the graph."""
    source_vectorizer, target_vectorizer = _vectorizers(config, prep)
    pieces = config.tokenizer == "subword"
    embedding, encoder = model.get_layer("source_embedding"), model.get_layer("encoder")
    bridge_h, bridge_c = model.get_layer("bridge_h"), model.get_layer("bridge_c")

    def source_ids(text):
        ids = source_vectorizer(text)
        return tf.cast(text_lib.dense_ids(ids, config.max_length), tf.int32)

    def encode(ids):
        mask = tf.not_equal(ids, 0)
        memory, h, c = encoder(embedding(ids), mask=mask, training=False)
        return memory, mask, bridge_h(h), bridge_c(c)

    def max_length(mask):
        # A translation seldom runs past twice its source; the cap stops a looping decoder.
        longest = tf.reduce_max(tf.concat([[0], tf.reduce_sum(tf.cast(mask, tf.int32), -1)], 0))
        return tf.minimum(2 * longest + 10, config.max_length + 10)

    return seq2seq.AttentionSearch(
        model.get_layer("decoder"),
        encode,
        prep["target_vocabulary"],
        max_length,
        config.length_penalty,
        prepare=source_ids,
        track=[source_vectorizer, target_vectorizer] if pieces else [source_vectorizer],
        detokenize=target_vectorizer.detokenize if pieces else None,
        products=config.decode_precision,
    )


# ----------------------------------------------------------------------------- evaluation


def _attention_plots(config, search, prep, pairs, run_dir: Path) -> None:
    sources = [s for s, _ in pairs[: config.attention_plots]]
    if not sources:
        return
    ids = search.prepare(tf.constant(sources))
    rows = seq2seq.attention_rows(search, ids, config.beam_width)
    source_words = ["", "[UNK]", *prep["source_vocabulary"]]
    for n, (row_ids, (output, weights)) in enumerate(zip(ids.numpy(), rows)):
        source = [source_words[i] for i in row_ids if i]
        path = run_dir / "plots" / f"attention_{n}.png"
        plots.attention_map(weights[:, : len(source)], source, output, path)


def evaluate(config: Config, model: keras.Model, prep: dict, pairs: list, run_dir: Path) -> dict:
    """sacreBLEU and chrF (greedy and beam), teacher-forced token accuracy, attention plots."""
    forced = training.evaluate(model, batches(config, prep, pairs, training=False))
    search = translator(config, model, prep)
    sources, references = [s for s, _ in pairs], [t for _, t in pairs]
    result = {"pairs": len(pairs), "loss": float(forced["loss"])}
    result["token_accuracy"] = float(forced["masked_accuracy"])
    outputs = {}
    for name, width in (("greedy", 1), ("beam", config.beam_width)):
        timing = {}  # the rate after the first batch, which traces the search
        outputs[name] = seq2seq.decode_all(search, sources, width, timing=timing)
        scores = metrics.translation_scores(outputs[name], [references], config.lowercase)
        result[f"bleu_{name}"] = scores["bleu"]
        result[f"chrf_{name}"] = scores["chrf"]
        result[f"bleu_{name}_detail"] = scores["bleu_detail"]
        result[f"{name}_sentences_per_second"] = round(timing["per_second"], 1)
        exact = np.mean(
            [
                o.lower() == r.lower() if config.lowercase else o == r
                for o, r in zip(outputs[name], references)
            ]
        )
        result[f"exact_match_{name}"] = float(exact)
    with open(run_dir / "translations.tsv", "w", encoding="utf-8") as f:
        f.write("source\treference\tgreedy\tbeam\n")
        for row in zip(sources, references, outputs["greedy"], outputs["beam"]):
            f.write("\t".join(x.replace("\t", " ").replace("\n", " ") for x in row) + "\n")
    _attention_plots(config, search, prep, pairs, run_dir)
    result["examples"] = [
        {"source": s, "reference": r, "beam": b}
        for s, r, b in list(zip(sources, references, outputs["beam"]))[:5]
    ]
    return result


# ----------------------------------------------------------------------------- export


def serving(config: Config, model: keras.Model, prep: dict) -> Serving:
    """Raw text in; translated text out, beam search and greedy."""
    search = translator(config, model, prep)
    spec = [tf.TensorSpec([None], tf.string, name="text")]

    @tf.function(input_signature=spec, autograph=False)
    def beam(text):
        return {"translation": search(text, config.beam_width)}

    @tf.function(input_signature=spec, autograph=False)
    def greedy(text):
        return {"translation": search(text, 1)}

    words = " ".join(prep["source_vocabulary"][:6])
    samples = [words, "", "¿Qué? 🎉 ünïcödé", "word " * 3000]
    return Serving(
        {"serving_default": beam, "greedy": greedy},
        [model, *search.tracked],
        {"serving_default": {"text": samples}, "greedy": {"text": samples}},
        requires=(subword.REQUIRES,) if config.tokenizer == "subword" else (),
    )
