"""image_captioning: data forms and their errors, the ImageNet-weights check, the feature cache,
a tiny run, the export."""

from __future__ import annotations

import json
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from conftest import SHARED_DATA, cli_ok, fresh_python
from serving_edges import run_edge_inputs

from lstm_recipes import recipe as recipe_lib
from lstm_recipes import seq2seq, vision
from lstm_recipes.cli import main
from lstm_recipes.data import captions as captions_lib
from lstm_recipes.data.scenes import builtin_examples, scene
from lstm_recipes.errors import UserError

# Its tests share a module fixture (a trained run): one pytest-xdist worker runs them all.
pytestmark = pytest.mark.xdist_group("image_captioning")

captioning = recipe_lib.load_recipe("image_captioning")


def test_scenes_are_deterministic_and_the_same_at_every_size():
    small, caps = scene(7, 32)
    large, caps2 = scene(7, 96)
    assert caps == caps2 and len(caps) == 3
    # The same colours sit in the same halves at both sizes.
    for img in (small, large):
        half = img.shape[1] // 2
        left, right = img[:, :half].reshape(-1, 3), img[:, half:].reshape(-1, 3)
        assert (left.min(0) < 200).any() and (right.min(0) < 200).any()
    assert scene(8, 32)[1] != caps or not np.array_equal(scene(8, 32)[0], small)


def _write_images(folder, n=6, suffix=".png"):
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        image, _ = scene(i, 48)
        data = tf.io.encode_png(image) if suffix == ".png" else tf.io.encode_jpeg(image)
        name = f"img{i}{suffix}"
        tf.io.write_file(str(folder / name), data)
        names.append(name)
    return names


def _captions(names):
    return {n: scene(i, 48)[1] for i, n in enumerate(names)}


def test_every_captions_form_reads_the_same_mapping(tmp_path):
    names = _write_images(tmp_path / "csv" / "images")
    caps = _captions(names)
    rows = ["image,caption"] + [f'{n},"{c}"' for n in names for c in caps[n]]
    (tmp_path / "csv" / "captions.csv").write_text("\n".join(rows) + "\n")

    _write_images(tmp_path / "flickr" / "Flicker8k_Dataset")
    lines = [f"{n}#{k}\t{c}" for n in names for k, c in enumerate(caps[n])]
    (tmp_path / "flickr" / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    lemma = [f"{n}#{k}\tlemmatized {c}" for n in names for k, c in enumerate(caps[n])]
    (tmp_path / "flickr" / "Flickr8k.lemma.token.txt").write_text("\n".join(lemma) + "\n")

    _write_images(tmp_path / "jsonl")
    jsonl = [json.dumps({"image": n, "captions": caps[n]}) for n in names]
    (tmp_path / "jsonl" / "captions.jsonl").write_text("\n".join(jsonl) + "\n")

    for spec in (
        tmp_path / "csv",
        tmp_path / "csv" / "captions.csv",
        tmp_path / "flickr",
        tmp_path / "jsonl",
    ):
        by_image, folder = captions_lib.read_captions(str(spec))
        assert by_image == caps, spec
        assert all((folder / n).is_file() for n in by_image)


def test_split_lists_and_splits_keep_all_captions_of_an_image(tmp_path):
    names = _write_images(tmp_path / "images", n=10)
    caps = _captions(names)
    rows = ["image,caption"] + [f"{n},{c}" for n in names for c in caps[n]]
    (tmp_path / "captions.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "train.txt").write_text("\n".join(names[:6]))
    (tmp_path / "dev.txt").write_text("\n".join(names[6:8]))
    (tmp_path / "test.txt").write_text("\n".join(names[8:]))
    config = captioning.Config(split_files="train.txt,dev.txt,test.txt")
    splits = captioning.load_data(config, str(tmp_path))
    assert splits.sizes() == {"train": 6, "validation": 2, "test": 2}
    assert all(len(c) == 3 for _, c in splits.train + splits.test)
    carved = captioning.load_data(captioning.Config(validation_size=2, test_size=2), str(tmp_path))
    assert carved.sizes() == {"train": 6, "validation": 2, "test": 2}


def test_broken_inputs_give_clear_errors(tmp_path):
    names = _write_images(tmp_path / "images", n=3)
    (tmp_path / "captions.csv").write_text("image,caption\nimg0.png,a cat\nnope.jpg,a dog\n")
    with pytest.raises(UserError, match=r"1 image\(s\) not in .*'nope.jpg'"):
        captions_lib.read_captions(str(tmp_path))

    (tmp_path / "captions.csv").unlink()
    with pytest.raises(UserError, match="expected a captions file"):
        captions_lib.read_captions(str(tmp_path))

    (tmp_path / "x.token.txt").write_text("img0.png#0\ta cat\nimg1.png a dog without a tab\n")
    with pytest.raises(UserError, match=r"x.token.txt:2: expected IMAGE#N<TAB>caption"):
        captions_lib.read_captions(str(tmp_path))

    (tmp_path / "images" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(UserError, match="could not decode .*broken.jpg"):
        vision.checked_image_bytes(str(tmp_path / "images" / "broken.jpg"))
    with pytest.raises(UserError, match="expected a readable image file"):
        vision.image_bytes(str(tmp_path / "images" / "gone.jpg"))
    assert names


def _mobilenet_weights(path):
    # A randomly initialized MobileNet 0.25 stands in for ImageNet weights (nothing downloads).
    net = keras.applications.MobileNet(
        alpha=0.25, include_top=False, weights=None, input_shape=(64, 64, 3)
    )
    net.save_weights(path)
    return path


def test_feature_cache_is_reused(tmp_path):
    weights = _mobilenet_weights(tmp_path / "mobilenet.weights.h5")
    backbone = vision.Backbone("mobilenet", str(weights), 64)
    refs = [f"builtin:{i}" for i in range(5)]
    first = vision.FeatureCache(backbone, str(tmp_path / "cache"))
    a = first.features(refs)
    assert first.computed == 5 and a.shape[0] == 5 and a.dtype == np.float16
    second = vision.FeatureCache(backbone, str(tmp_path / "cache"))
    b = second.features(refs + ["builtin:9"])
    assert second.computed == 1, "cached features were recomputed"
    np.testing.assert_array_equal(a, b[:5])
    other = vision.FeatureCache(
        vision.Backbone("mobilenet", str(weights), 96), str(tmp_path / "cache")
    )
    other.features(refs[:1])
    assert other.computed == 1, "another image size must not reuse these features"


# ----------------------------------------------------------------------------- ImageNet weights

MODELS = SHARED_DATA.parent / "models"


class _Download(Exception):
    pass


@pytest.fixture
def keras_downloads(monkeypatch):
    """The file names Keras Applications asked to download; the download itself fails."""
    from keras.src.utils import file_utils

    asked = []

    def get_file(fname, *args, **kwargs):
        asked.append(fname)
        raise _Download(fname)

    monkeypatch.setattr(file_utils, "get_file", get_file)
    return asked


@pytest.fixture
def offline(monkeypatch, tmp_path):
    import lstm_recipes.data.tfds as tfds_lib

    monkeypatch.setattr(tfds_lib, "_online", lambda: False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(vision, "_keras_model_dirs", lambda: [tmp_path / "keras" / "models"])
    return tmp_path / "keras" / "models"


@pytest.mark.parametrize(
    "backbone, size",
    [("mobilenet", 64), ("mobilenet", 160), ("mobilenet_v2", 64), ("mobilenet_v2", 96)],
)
def test_imagenet_file_name_is_the_one_keras_looks_for(keras_downloads, backbone, size):
    app = {
        "mobilenet": keras.applications.MobileNet,
        "mobilenet_v2": keras.applications.MobileNetV2,
    }
    alpha = 0.25 if backbone == "mobilenet" else 1.0
    with pytest.raises(_Download), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras warns that sizes without a file load the 224 one
        app[backbone](
            alpha=alpha, include_top=False, weights="imagenet", input_shape=(size, size, 3)
        )
    assert keras_downloads == [vision.imagenet_file_name(backbone, size)]


def test_imagenet_file_under_keras_home_is_found_for_any_image_size(offline):
    offline.mkdir(parents=True)
    for name in ("mobilenet_2_5_224_tf_no_top.h5", vision.imagenet_file_name("mobilenet_v2", 64)):
        (offline / name).write_bytes(b"placeholder")
    # MobileNet v1 file names say 224 at 64 pixels: the file that is there is the one Keras wants.
    found = vision.resolve_weights("mobilenet", "imagenet", 64)
    assert found == str(offline / "mobilenet_2_5_224_tf_no_top.h5")
    assert vision.resolve_weights("mobilenet_v2", "imagenet", 64).endswith("_1.0_224_no_top.h5")


def test_a_given_weights_file_is_used_and_a_missing_one_is_named(offline, tmp_path):
    given = tmp_path / "my weights.h5"
    given.write_bytes(b"placeholder")
    assert vision.resolve_weights("mobilenet", str(given), 32) == str(given)
    with pytest.raises(UserError, match="expected a weights file at weights=.*gone.h5, found none"):
        vision.resolve_weights("mobilenet", str(tmp_path / "gone.h5"), 32)


def test_offline_without_the_file_fails_in_one_line_and_keras_never_downloads(
    offline, keras_downloads
):
    with pytest.raises(UserError) as error:
        vision.Backbone("mobilenet", "imagenet", 64).build()
    message = str(error.value)
    assert "--set weights=PATH/mobilenet_2_5_224_tf_no_top.h5" in message
    assert "\n" not in message
    assert keras_downloads == [], "Keras started a download"
    with pytest.raises(UserError, match="--set weights=PATH/mobilenet_v2_weights_tf_dim_ordering"):
        vision.resolve_weights("mobilenet_v2", "imagenet", 160)


@pytest.mark.skipif(
    not (MODELS / "mobilenet_2_5_224_tf_no_top.h5").is_file(),
    reason=f"no ImageNet MobileNet weights at {MODELS} (set LSTM_RECIPES_DATA)",
)
def test_shared_mobilenet_weights_load_offline_from_keras_home(offline, keras_downloads):
    import shutil

    offline.mkdir(parents=True)
    shutil.copy(MODELS / "mobilenet_2_5_224_tf_no_top.h5", offline)
    from_home = vision.Backbone("mobilenet", "imagenet", 64).build()
    given = vision.Backbone("mobilenet", str(MODELS / "mobilenet_2_5_224_tf_no_top.h5"), 64)
    assert keras_downloads == []
    for a, b in zip(from_home.weights, given.build().weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cap") / "run"
    cli_ok("run", "image_captioning", "--preset", "tiny", "--run-dir", str(run_dir))
    return run_dir


def test_tiny_run_writes_bleu_captions_and_plots(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    for n in (1, 2, 3, 4):
        assert 0 <= metrics[f"bleu{n}_beam"] <= 100 and f"bleu{n}_greedy" in metrics
    rows = (tiny_run / "captions.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["image", "greedy", "beam", "references"]
    assert len(rows) == metrics["images"] + 1
    assert (tiny_run / "plots" / "attention_0.png").stat().st_size > 1000


def test_export_round_trip_on_jpeg_bytes_in_a_fresh_process(tiny_run, tmp_path):
    from lstm_recipes.run import Run

    run = Run.reopen(tiny_run)
    config, prep, model = run.config, run.prep, run.model
    search = captioning.captioner(config, model, prep)
    images = [tf.io.encode_jpeg(scene(i, 70)[0]).numpy() for i in range(3)]
    images.append(tf.io.encode_png(scene(3, 20)[0]).numpy())
    beam = [t.decode() for t in search(tf.constant(images), config.beam_width).numpy()]
    greedy = [t.decode() for t in search(tf.constant(images), 1).numpy()]
    paths = []
    for i, data in enumerate(images):
        paths.append(str(tmp_path / f"{i}.img"))
        (tmp_path / f"{i}.img").write_bytes(data)
    script = (
        "import json, sys, tensorflow as tf\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "x = tf.constant([open(p, 'rb').read() for p in json.loads(sys.argv[2])])\n"
        "out = {k: [t.decode() for t in m.signatures[k](image_bytes=x)['caption'].numpy()]\n"
        "       for k in ('serving_default', 'greedy')}\n"
        "try:\n"
        "    m.signatures['greedy'](image_bytes=tf.constant([b'not an image']))\n"
        "    out['corrupt'] = 'accepted'\n"
        "except tf.errors.InvalidArgumentError:\n"
        "    out['corrupt'] = 'InvalidArgument'\n"
        "print(json.dumps(out))\n"
    )
    served = fresh_python(script, str(tiny_run / "export" / "1"), json.dumps(paths), cwd=tmp_path)
    assert served["serving_default"] == beam
    assert served["greedy"] == greedy
    assert served["corrupt"] == "InvalidArgument"


def test_predict_captions_image_files_and_rejects_non_images(tiny_run, tmp_path):
    image = tmp_path / "scene.jpg"
    image.write_bytes(tf.io.encode_jpeg(scene(1, 64)[0]).numpy())
    result = cli_ok("predict", str(tiny_run), "--json", str(image))
    row = json.loads(result.output.strip().splitlines()[-1])
    assert row["image_bytes"] == str(image) and isinstance(row["caption"], str)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    bad = CliRunner().invoke(main, ["predict", str(tiny_run), str(text)])
    assert bad.exit_code == 2 and "rejected the input" in bad.output
    missing = CliRunner().invoke(main, ["predict", str(tiny_run), str(tmp_path / "none.jpg")])
    assert missing.exit_code == 2 and "expected a readable file" in missing.output


@pytest.mark.slow  # a second CLI run; the fast suite covers its parts in unit tests
def test_frozen_backbone_run_trains_on_cached_features_and_exports(tmp_path):
    # The Flickr8k path on a small scale: a frozen MobileNet from a weights file, init decoder.
    weights = _mobilenet_weights(tmp_path / "mobilenet.weights.h5")
    run_dir = tmp_path / "run"
    args = ["run", "image_captioning", "--preset", "tiny", "--run-dir", str(run_dir)]
    for item in (
        "backbone=mobilenet",
        f"weights={weights}",
        "image_size=64",
        "max_examples=60",
        "decoder=init",
        f"feature_cache={tmp_path / 'cache'}",
    ):
        args += ["--set", item]
    result = cli_ok(*args)
    assert "computing image features" in result.output
    assert (run_dir / "export" / "1" / "saved_model.pb").exists()
    again = cli_ok(*[a if a != str(run_dir) else str(tmp_path / "run2") for a in args])
    assert "computing image features" not in again.output, "features were not reused"


def _small_mobilenet_config(weights, **changes):
    return captioning.Config(
        backbone="mobilenet",
        weights=str(weights),
        image_size=64,
        feature_dim=8,
        embedding_dim=8,
        units=8,
        **changes,
    )


def test_frozen_backbone_captioner_on_image_bytes_equals_it_on_cached_features(tmp_path):
    weights = _mobilenet_weights(tmp_path / "mobilenet.weights.h5")
    config = _small_mobilenet_config(weights, max_length=6)
    examples = builtin_examples(4)
    prep = captioning.fit_preprocessing(config, examples, tmp_path)
    model = captioning.build_model(config, prep)
    assert "features" in model.input, "a frozen backbone trains on cached features"
    search = captioning.captioner(config, model, prep)
    refs = [r for r, _ in examples]
    cached = vision.FeatureCache(
        vision.Backbone("mobilenet", str(weights), 64), prep["feature_cache"]
    )
    grids = cached.features(refs).astype(np.float32)
    images = tf.constant([vision.image_bytes(r) for r in refs])
    np.testing.assert_allclose(search.prepare(images).numpy(), grids, rtol=1e-2, atol=1e-2)
    from_bytes = [t.decode() for t in search(images, 2).numpy()]
    assert from_bytes == seq2seq.decode_all(search, grids, 2, prepared=True)


def test_caption_metrics():
    from lstm_recipes import metrics

    refs = [["a dog runs on grass", "a brown dog runs"], ["two girls play", "girls play in a park"]]
    perfect = metrics.caption_bleu(["a dog runs on grass", "two girls play"], refs)
    assert perfect["bleu1"] == 100.0 and perfect["bleu4"] > 0
    poor = metrics.caption_bleu(["a cat sleeps", "a man sits"], refs)
    assert poor["bleu1"] < perfect["bleu1"] and poor["bleu4"] == 0.0
    pytest.importorskip("pycocoevalcap")
    three = refs + [["a red car", "a car parked on a street"]]
    good = metrics.caption_cider(["a dog runs on grass", "two girls play", "a red car"], three)
    bad = metrics.caption_cider(["a red car", "a dog runs", "two girls play"], three)
    assert good > bad >= 0.0


def test_fine_tuning_trains_only_the_last_backbone_layers_with_augmentation(tmp_path):
    weights = _mobilenet_weights(tmp_path / "mobilenet.weights.h5")
    config = _small_mobilenet_config(weights, fine_tune=4, augment=True, batch_size=4)
    examples = builtin_examples(6)
    prep = captioning.fit_preprocessing(config, examples)
    model = captioning.build_model(config, prep)
    assert "features" not in model.input, "a trained backbone takes images, not cached features"
    backbone = model.get_layer("image_encoder").layers[2]
    trainable = [layer for layer in backbone.layers if layer.trainable and layer.weights]
    assert 0 < len(trainable) <= 4 and backbone.layers[-1].trainable
    assert not backbone.layers[1].trainable
    before = [w.numpy().copy() for w in backbone.weights]
    history = model.fit(captioning.batches(config, prep, examples, training=True), verbose=0)
    assert np.isfinite(history.history["loss"][0])
    changed = [not np.array_equal(a, w.numpy()) for a, w in zip(before, backbone.weights)]
    assert any(changed) and not all(changed)


def test_tfds_coco_captions_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):
        splits = captioning.load_data(captioning.PRESETS["tiny"], "tfds:coco_captions")
    ref, caps = splits.train[0]
    assert isinstance(ref, bytes) and ref[:4] == b"\x89PNG"
    assert caps and all(isinstance(c, str) for c in caps)
    assert splits.sizes()["test"] >= 1


def test_served_captioning_edge_inputs(tiny_run):
    results = run_edge_inputs(tiny_run / "export" / "1")
    corrupt = [r for r in results if r["case"] in ("not_an_image", "truncated_png", "empty_bytes")]
    assert corrupt and all(r["outcome"] == "InvalidArgumentError" for r in corrupt), corrupt


def test_layers_stacks_the_decoder_and_the_search_carries_every_layer(tmp_path):
    # `layers` means the same in every recipe: here, stacked decoder LSTMs.
    config = recipe_lib.resolve_config(captioning, "tiny", ["layers=2", "max_length=5"])
    examples = builtin_examples(3)
    prep = captioning.fit_preprocessing(config, examples, tmp_path)
    # Untrained weights: whether a search ends at once depends on them, so they are fixed (the
    # global generator's state depends on which tests ran before in this worker).
    keras.utils.set_random_seed(0)
    model = captioning.build_model(config, prep)
    assert model.get_layer("decoder").num_layers == 2
    search = captioning.captioner(config, model, prep)
    images = tf.constant([vision.image_bytes(r) for r, _ in examples])
    for width in (1, 2):
        captions = [t.decode() for t in search(images, width).numpy()]
        words = {w for c in captions for w in c.split()}
        assert len(captions) == 3 and words and words <= set(prep["vocabulary"]), captions
