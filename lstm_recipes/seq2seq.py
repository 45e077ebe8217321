"""Search through an attention decoder, shared by the encoder-decoder recipes.

One class, ``AttentionSearch``, turns what a recipe's encoder gives (a memory to attend to and
a start state) into text: greedy or beam search (``decoding``), ids to words, detokenization,
and the attention weights behind an output. It is made of graph ops only, so evaluation and the
exported signatures run the same search. ``decode_all`` decodes a list in batches and
``attention_rows`` gives what an attention plot draws (``plots`` draws it). ``pair_batches``
and ``streamed_pair_batches`` make the teacher-forced training batches of (source, target) ids.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from lstm_recipes import decoding
from lstm_recipes.data import text as text_lib

# Ids 0 and 1 are TextVectorization's padding and out-of-vocabulary; the markers follow. They
# are ids, never text, so no standardization can produce or damage them.
START, END = 2, 3
MARKERS = ["[START]", "[END]"]


# Measured with TensorFlow 2.21 (README, "On a phone or a watch"): what stops `--format litert`.
NO_LITERT = (
    "its search loop (greedy and beam in one tf.while_loop) does not trace with the fixed "
    "batch of one a LiteRT file needs (a decoder state enters the loop as [1, units] and leaves "
    "it as [None, units]), and its text in and out needs TensorFlow Select ops"
)


class AttentionSearch(tf.Module):
    """Inputs in, text out through an ``attention.AttentionDecoder``: encode once, search,
    detokenize, all in the graph.

    Args:
        decoder: the trained model's ``AttentionDecoder`` layer.
        encode: encoder inputs -> ``(memory, memory_mask, h, c)``, where the decoder starts.
        vocabulary: output words by id from 2 on (the markers first), as fitted in training.
        max_length: most output steps: an int, or a function of the memory mask giving a
            scalar per batch (e.g. a cap relative to the source length).
        length_penalty: GNMT length-penalty alpha of the beam search.
        prepare: raw inputs (strings, image bytes) -> what ``encode`` takes (default: as is).
        track: layers and lookup tables the functions use, kept as attributes so a SavedModel
            holding this object also holds their variables.
        detokenize: ragged output ids (markers and padding removed) -> one string per row, for
            subword outputs; by default ids become words joined by spaces.
        products: the vocabulary product's precision, ``float32`` or ``bfloat16`` (see
            ``decoding.search_attention_decoder``).
    """

    def __init__(
        self,
        decoder,
        encode: Callable,
        vocabulary: list[str],
        max_length: int | Callable,
        length_penalty: float,
        prepare: Callable | None = None,
        track: list | None = None,
        detokenize: Callable | None = None,
        products: str = "float32",
    ):
        super().__init__()
        self.decoder = decoder
        self._encode = encode
        self._prepare = prepare
        self._max_length = max_length
        self.length_penalty = length_penalty
        self.vocabulary = ["", "[UNK]", *vocabulary]
        self.words_table = tf.constant(self.vocabulary)
        self.tracked = list(track or [])
        self._detokenize = detokenize
        self.products = products

    def prepare(self, raw):
        """What ``encode`` takes, from raw inputs (e.g. source ids from strings)."""
        return raw if self._prepare is None else self._prepare(raw)

    def start(self, inputs):
        """(memory, memory mask, the decoder's start states) for prepared inputs."""
        memory, mask, h, c = self._encode(inputs)
        return memory, mask, self.decoder.start_states(h, c)

    def search(self, inputs, beam_width: int):
        """(batch, steps) output ids for prepared inputs, each row ending in END repeats.

        Args:
            inputs: what ``encode`` takes (the source ids, for a decoder that copies).
            beam_width: 1 for greedy search.
        """
        memory, mask, states = self.start(inputs)
        max_length = self._max_length
        if callable(max_length):
            max_length = max_length(mask)
        return decoding.search_attention_decoder(
            self.decoder,
            states,
            memory,
            mask,
            START,
            END,
            max_length,
            beam_width,
            self.length_penalty,
            source=inputs if self.decoder.copy else None,
            products=self.products,
        )

    def words(self, out):
        """Ragged output words (markers and padding removed, [UNK] kept)."""
        return decoding.output_words(self.words_table, out, START, END)

    def text(self, out):
        """One detokenized string per row of output ids."""
        if self._detokenize is not None:
            keep = decoding.until_end(out, END) & (out != START) & (out != 0)
            return self._detokenize(tf.ragged.boolean_mask(out, keep))
        return text_lib.detokenize(tf.strings.reduce_join(self.words(out), axis=-1, separator=" "))

    def decode(self, inputs, beam_width: int):
        """Text for prepared inputs (e.g. cached image features)."""
        return self.text(self.search(inputs, beam_width))

    def __call__(self, raw, beam_width: int):
        """Text for raw inputs: what an exported signature returns."""
        return self.decode(self.prepare(raw), beam_width)

    def attention(self, inputs, out):
        """(batch, output steps, memory positions) attention weights behind given outputs."""
        memory, mask, states = self.start(inputs)
        target_in = tf.concat([tf.fill([tf.shape(out)[0], 1], START), out[:, :-1]], 1)
        source = inputs if self.decoder.copy else None
        _, weights, _ = self.decoder.decode(
            target_in, memory, mask, states, training=False, source=source
        )
        return weights


def decode_all(
    search: AttentionSearch,
    items,
    beam_width: int,
    batch: int = 64,
    prepared: bool = False,
    timing: dict | None = None,
) -> list[str]:
    """Texts for ``items`` in their order, decoded in batches of similar length.

    Args:
        search: the search to run.
        items: raw inputs (a list of strings or bytes), or with ``prepared`` an array of what
            ``search.encode`` takes (e.g. cached image features, one row per item).
        beam_width: 1 for greedy search.
        batch: rows decoded together.
        prepared: items are encoder inputs, not raw inputs.
        timing: if given, gets ``items`` and ``seconds`` of the batches after the first (the
            first one traces the search graph, which would dominate a small set's rate), or of
            all when there is only one, and ``per_second``.
    """
    if prepared:
        items = np.asarray(items)
        spec = tf.TensorSpec([None, *items.shape[1:]], tf.as_dtype(items.dtype))
        run = search.decode
    else:
        spec, run = tf.TensorSpec([None], tf.string), search
    fn = tf.function(lambda x: run(x, beam_width), input_signature=[spec], autograph=False)
    # Similar lengths together pad (and search) less; the sort is stable, so equal-length
    # items keep their order.
    order = sorted(range(len(items)), key=lambda i: len(items[i]))
    out = [""] * len(items)
    timed, t0 = 0, time.perf_counter()
    for start in range(0, len(order), batch):
        if start == batch:
            timed, t0 = 0, time.perf_counter()
        chunk = order[start : start + batch]
        rows = items[chunk] if prepared else tf.constant([items[i] for i in chunk])
        for i, text in zip(chunk, fn(rows).numpy()):
            out[i] = text.decode("utf-8", "replace")
        timed += len(chunk)
    if timing is not None:
        seconds = time.perf_counter() - t0
        timing.update(items=timed, seconds=seconds, per_second=timed / max(seconds, 1e-9))
    return out


def attention_rows(
    search: AttentionSearch, inputs, beam_width: int
) -> list[tuple[list[str], np.ndarray]]:
    """For each input row, its searched output words (through ``[END]`` when it ended) and
    their attention weights, ``(len(words), memory positions)``: what an attention plot draws.

    Args:
        search: the search to run.
        inputs: prepared inputs (what ``search.encode`` takes), a few rows.
        beam_width: 1 for greedy search.
    """
    out = search.search(inputs, beam_width)
    weights = search.attention(inputs, out).numpy()
    rows = []
    for ids, w in zip(out.numpy(), weights):
        # Through the first END; a row that never ended (the step cap) has all its steps.
        length = min(int(decoding.until_end(ids[None], END).numpy().sum()) + 1, len(ids))
        rows.append(([search.vocabulary[i] for i in ids[:length]], w[:length]))
    return rows


# ----------------------------------------------------------------------------- training batches


def _teacher_forcing(s, t):
    return {"source": s, "target_in": tf.concat([[START], t], 0)}, tf.concat([t, [END]], 0)


def _length(x, y):
    return tf.maximum(tf.shape(x["source"])[0], tf.shape(y)[0])


def _at_least_one_step(x, y):
    s = x["source"]
    return {**x, "source": tf.pad(s, [[0, 0], [0, tf.maximum(0, 1 - tf.shape(s)[1])]])}, y


def _edges(max_length: int) -> list[int]:
    return text_lib.bucket_boundaries(max_length + 2, start=4, growth=1.25)


def pair_batches(
    source, target, batch_size: int, max_length: int, *, training: bool, seed: int
) -> tf.data.Dataset:
    """Length-bucketed batches of ({source, target_in}, target_out), right-padded with 0.

    Args:
        source: RaggedTensor of source ids, one row per pair.
        target: RaggedTensor of target ids (no markers; ``START``/``END`` are added here).
        batch_size: pairs per batch.
        max_length: longest sentence (sets the bucket edges).
        training: shuffle every epoch when True.
        seed: shuffle seed.
    """
    ds = tf.data.Dataset.from_tensor_slices((source, target)).map(
        lambda s, t: (tf.cast(s, tf.int32), tf.cast(t, tf.int32))
    )
    if training:
        ds = ds.shuffle(int(source.nrows()), seed=seed, reshuffle_each_iteration=True)
    edges = _edges(max_length)
    ds = ds.map(_teacher_forcing).bucket_by_sequence_length(
        element_length_func=_length,
        bucket_boundaries=edges,
        bucket_batch_sizes=[batch_size] * (len(edges) + 1),
    )
    return ds.map(_at_least_one_step).prefetch(tf.data.AUTOTUNE)


def streamed_pair_batches(
    pairs: tf.data.Dataset,
    source_vectorizer,
    target_vectorizer,
    batch_size: int,
    max_length: int,
    *,
    training: bool,
    seed: int,
) -> tf.data.Dataset:
    """``pair_batches`` from a dataset of raw (source, target) strings read from shards.

    Pairs longer than ``max_length`` tokens on either side are dropped, as in the in-memory
    path: a cut target would teach a wrong ending.

    Args:
        pairs: raw (source, target) string pairs (``data.stream.Stream.dataset``).
        source_vectorizer: the source ``TextVectorization``.
        target_vectorizer: the target ``TextVectorization``.
        batch_size: pairs per batch.
        max_length: longest sentence kept, in tokens.
        training: shuffle (within a buffer) when True.
        seed: shuffle seed.
    """

    def encode(sources, targets):
        s = tf.cast(source_vectorizer(sources)[:, : max_length + 1], tf.int32)
        t = tf.cast(target_vectorizer(targets)[:, : max_length + 1], tf.int32)
        return s, t

    return text_lib.streamed_batches(
        pairs,
        encode,
        batch_size,
        training=training,
        seed=seed,
        edges=_edges(max_length),
        length_of=_length,
        pad=_at_least_one_step,
        keep=lambda s, t: (tf.shape(s)[0] <= max_length) & (tf.shape(t)[0] <= max_length),
        before_bucketing=_teacher_forcing,
    )
