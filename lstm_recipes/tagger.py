"""The token tagging recipe's graph functions: what its SavedModel and LiteRT file run.

``Tagger`` maps raw tokens to tags in the graph (string lookups, then the model, then softmax,
constrained Viterbi or the CRF); ``serving`` and ``portable`` wrap it into the exported
signatures: raw strings for the SavedModel, token ids for LiteRT (no string ops on a device).
"""

from __future__ import annotations

import json

import keras
import numpy as np
import tensorflow as tf

from lstm_recipes import aligned, litert, stepping
from lstm_recipes.crf import chunk_constraints, marginals, viterbi
from lstm_recipes.data import tagged
from lstm_recipes.export import Serving

VOCABULARY_FILE = "vocabulary.json"


class Tagger(tf.Module):
    """Raw tokens (strings, "" pads) and extra columns in; tags and probabilities out.

    Args:
        config: the tagging config (``max_length``, ``max_word_chars``, ``lowercase``, ``crf``).
        model: the trained tagging model.
        prep: the fitted vocabularies and labels.
    """

    def __init__(self, config, model: keras.Model, prep: dict):
        super().__init__()
        self.config, self.model = config, model
        self.labels = tf.constant(["", *prep["labels"]])
        self.crf = model.get_layer("crf") if config.crf else None
        self.constraints = chunk_constraints(prep["labels"]) if prep["constrained"] else None
        self.inputs = tagged.TokenInputs(
            prep, config.max_length, config.max_word_chars, config.lowercase
        )

    def __call__(self, tokens, features=None):
        """(tags string[B, T], probabilities [B, T', C]) for ("" padded) tokens."""
        # An LSTM cannot run zero steps: give an empty batch one padding step, then drop it.
        steps = tf.shape(tokens)[1]
        padded = tf.pad(tokens, [[0, 0], [0, tf.maximum(0, 1 - steps)]])
        if features is not None:
            features = tf.pad(features, [[0, 0], [0, tf.maximum(0, 1 - steps)], [0, 0]])
        inputs, real = self.inputs(padded, features)
        ids, probabilities = self.decode(inputs, real)
        return self.tags(ids, tf.shape(tokens)[1]), probabilities

    def tags(self, ids, width):
        """Tag strings for ``decode``'s ids, as wide as the input (tokens past max_length get
        the tag "")."""
        # Padded as ids, then gathered: LiteRT has no string Pad or Select kernels.
        ids = tf.pad(ids, [[0, 0], [0, tf.maximum(0, width - tf.shape(ids)[1])]])
        return tf.gather(self.labels, ids[:, :width])

    def decode(self, inputs: dict, real):
        """(tag ids int32[B, T] with 0 on padding, probabilities [B, T, C]) for the model's id
        inputs.

        Args:
            inputs: ``words``, ``chars`` and ``features`` ids, as the model takes them.
            real: [B, T] True on real tokens.
        """
        emissions = self.model(inputs, training=False)[..., 1:]
        limits = self.constraints or (None, None)
        if self.crf is not None:
            learned = (self.crf.transitions, self.crf.start, self.crf.end)
            ids = viterbi(emissions, real, *limits, *learned)
            probabilities = marginals(emissions, real, *limits, *learned)
        else:
            probabilities = tf.nn.softmax(emissions)
            if self.constraints is not None:
                ids = viterbi(tf.math.log(probabilities + 1e-12), real, *limits)
            else:
                ids = tf.argmax(probabilities, -1, output_type=tf.int32)
        return tf.where(real, ids + 1, 0), probabilities


def serving(config, model: keras.Model, prep: dict) -> Serving:
    """Raw tokens (and extra columns) in; tags and probabilities out; ``tag_text`` for lines;
    ``step`` for a causal model without a CRF.

    Args:
        config: the tagging config.
        model: the trained model.
        prep: the fitted vocabularies and labels.
    """
    tagger = Tagger(config, model, prep)
    k = len(prep["features"])
    specs = [tf.TensorSpec([None, None], tf.string, name="tokens")]
    specs += [tf.TensorSpec([None, None, k], tf.string, name="features")] if k else []

    @tf.function(input_signature=specs, autograph=False)
    def serve(tokens, features=None):
        tags, probabilities = tagger(tokens, features)
        return {"tags": tags, "probabilities": probabilities}

    words = prep["words"][:5] or ["word"]
    tokens = [words + [""], ["ÜNÏCÖDÉ", "🎉", "", "", "", ""]]
    track = [model, tagger.inputs.words, tagger.inputs.chars, *tagger.inputs.features]
    endpoints, samples = {"serving_default": serve}, {"serving_default": {"tokens": tokens}}
    if k:
        first = [v[0] for v in prep["features"]]
        samples["serving_default"]["features"] = [[first] * len(row) for row in tokens]
    else:

        @tf.function(
            input_signature=[tf.TensorSpec([None], tf.string, name="text")], autograph=False
        )
        def tag_text(text):
            # Bytes that are not UTF-8 become U+FFFD: the tokens returned are always text.
            text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")
            tokens = tf.strings.split(tf.strings.strip(text)).to_tensor("")
            tags, _ = tagger(tokens)
            return {"tokens": tokens, "tags": tags}

        endpoints["tag_text"] = tag_text
        samples["tag_text"] = {"text": [" ".join(words), "", "ÜNÏCÖDÉ 🎉 " * 500]}
    _add_step(config, model, prep, endpoints, samples, None)
    return Serving(endpoints, track, samples)


def _id_specs(config, prep: dict, batch, per_token: bool) -> list[tf.TensorSpec]:
    """The model's id inputs (``words``, ``chars``, then ``features`` with extra columns)."""
    steps = [] if per_token else [None]
    specs = [tf.TensorSpec([batch, *steps], tf.int32, name="words")]
    specs.append(tf.TensorSpec([batch, *steps, config.max_word_chars], tf.int32, name="chars"))
    if prep["features"]:
        k = len(prep["features"])
        specs.append(tf.TensorSpec([batch, *steps, k], tf.int32, name="features"))
    return specs


def _as_inputs(prep: dict, words, chars, features) -> dict:
    # The model always takes a features input; without extra columns it is [B, T, 0].
    if features is None:
        features = tf.zeros(tf.concat([tf.shape(words), [len(prep["features"])]], 0), tf.int32)
    return {"words": words, "chars": chars, "features": features}


def _sample_ids(config, prep: dict, steps: int) -> dict:
    """Id inputs for verification: known words, an unknown one (1) and padding (0)."""
    rng = np.random.default_rng(0)
    words = rng.integers(1, len(prep["words"]) + 2, size=(1, steps))
    words[0, -2:] = 0
    chars = rng.integers(0, len(prep["chars"]) + 2, size=(1, steps, config.max_word_chars))
    chars[0, -2:] = 0
    sample = {"words": words.tolist(), "chars": chars.tolist()}
    if prep["features"]:
        sizes = [len(v) + 2 for v in prep["features"]]
        columns = [rng.integers(1, n, size=(1, steps)) for n in sizes]
        sample["features"] = np.stack(columns, -1).tolist()
    return sample


def _add_step(config, model, prep: dict, endpoints: dict, samples: dict, batch) -> None:
    """A causal model's ``step(words, chars[, features], states)`` (``aligned.step_function``):
    each token tagged by its most likely tag as it arrives; not for a CRF or a BiLSTM."""
    if config.bidirectional or config.crf:
        return
    # The encoder was called as encoder(x, mask=...): its recorded input is [x, mask].
    encoder_input = keras.Model(model.input, tf.nest.flatten(model.get_layer("encoder").input)[0])

    def embed(words, chars, features=None):
        features = None if features is None else features[:, None]
        inputs = _as_inputs(prep, words[:, None], chars[:, None], features)
        return encoder_input(inputs, training=False), tf.not_equal(inputs["words"], 0)

    specs = _id_specs(config, prep, batch, per_token=True)
    step = aligned.step_function(model, prep["labels"], config, embed, specs, key="tags")
    endpoints["step"] = step
    first = {k: [v[0][0]] for k, v in _sample_ids(config, prep, 3).items()}
    samples["step"] = {**first, "states": aligned.zero_states(config, 1)}


def streaming(config) -> str:
    """What ``metadata.json`` says about a step signature."""
    if config.bidirectional:
        return "no (bidirectional: set bidirectional=false to train a causal model)"
    if config.crf:
        return "no (a CRF decodes whole sentences: set crf=false)"
    return "step (each token's most likely tag, no Viterbi over the sentence)"


def portable(config, model: keras.Model, prep: dict) -> litert.Portable:
    """LiteRT: ``words: int32[1, T]``, ``chars: int32[1, T, W]`` (and ``features: int32[1, T,
    K]``) -> ``tags: string[1, T]``, ``probabilities: float32[1, T, C]``, with ``vocabulary.json``
    beside (the app tokenizes: README); ``step`` for a causal model.

    Args:
        config: the tagging config.
        model: the trained model.
        prep: the fitted vocabularies and labels.
    """
    tagger = Tagger(config, model, prep)

    @tf.function(input_signature=_id_specs(config, prep, 1, per_token=False), autograph=False)
    def serve(words, chars, features=None):
        # An LSTM cannot run zero steps: an empty sentence gets one padding token.
        steps = tf.shape(words)[1]
        pad = tf.maximum(0, 1 - steps)
        inputs = _as_inputs(prep, words, chars, features)
        inputs = {
            k: tf.pad(v, [[0, 0], [0, pad]] + [[0, 0]] * (len(v.shape) - 2))[:, : config.max_length]
            for k, v in inputs.items()
        }
        ids, probabilities = tagger.decode(inputs, tf.not_equal(inputs["words"], 0))
        return {"tags": tagger.tags(ids, steps), "probabilities": probabilities}

    endpoints = {"serving_default": serve}
    samples = {"serving_default": _sample_ids(config, prep, 7)}
    _add_step(config, model, prep, endpoints, samples, 1)
    # Ids count from 2 in each list (0 pads, 1 is unknown), as StringLookup(mask_token="") does.
    vocabulary = {"first_id": 2, "words": prep["words"], "chars": prep["chars"]}
    vocabulary["features"] = prep["features"]
    facts = {"labels": prep["labels"]}
    if "step" in endpoints:  # the state layout an app carries between steps
        facts.update(stepping.facts(config))
    facts["streaming"] = streaming(config)
    facts["tokenizer"] = {"vocabulary": VOCABULARY_FILE, "lowercase": config.lowercase}
    facts["tokenizer"].update(max_word_chars=config.max_word_chars, max_length=config.max_length)
    files = {VOCABULARY_FILE: json.dumps(vocabulary, ensure_ascii=False)}
    return litert.Portable(endpoints, samples, facts, files)
