"""image_captioning: data forms and their errors, the feature cache, a tiny run, the export."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from conftest import cli_ok, fresh_python
from serving_edges import run_edge_inputs

from lstm_recipes import recipe as recipe_lib
from lstm_recipes.cli import main
from lstm_recipes.errors import UserError

captioning = recipe_lib.load_recipe("image_captioning")


def test_scenes_are_deterministic_and_the_same_at_every_size():
    small, caps = captioning.scene(7, 32)
    large, caps2 = captioning.scene(7, 96)
    assert caps == caps2 and len(caps) == 3
    # The same colours sit in the same halves at both sizes.
    for img in (small, large):
        half = img.shape[1] // 2
        left, right = img[:, :half].reshape(-1, 3), img[:, half:].reshape(-1, 3)
        assert (left.min(0) < 200).any() and (right.min(0) < 200).any()
    assert captioning.scene(8, 32)[1] != caps or not np.array_equal(
        captioning.scene(8, 32)[0], small
    )


def _write_images(folder, n=6, suffix=".png"):
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        image, _ = captioning.scene(i, 48)
        data = tf.io.encode_png(image) if suffix == ".png" else tf.io.encode_jpeg(image)
        name = f"img{i}{suffix}"
        tf.io.write_file(str(folder / name), data)
        names.append(name)
    return names


def _captions(names):
    return {n: captioning.scene(i, 48)[1] for i, n in enumerate(names)}


def test_every_captions_form_reads_the_same_mapping(tmp_path):
    config = captioning.Config()
    names = _write_images(tmp_path / "csv" / "images")
    caps = _captions(names)
    rows = ["image,caption"] + [f'{n},"{c}"' for n in names for c in caps[n]]
    (tmp_path / "csv" / "captions.csv").write_text("\n".join(rows) + "\n")

    _write_images(tmp_path / "flickr" / "Flicker8k_Dataset")
    lines = [f"{n}#{k}\t{c}" for n in names for k, c in enumerate(caps[n])]
    (tmp_path / "flickr" / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")

    _write_images(tmp_path / "jsonl")
    jsonl = [json.dumps({"image": n, "captions": caps[n]}) for n in names]
    (tmp_path / "jsonl" / "captions.jsonl").write_text("\n".join(jsonl) + "\n")

    for spec in (
        tmp_path / "csv",
        tmp_path / "csv" / "captions.csv",
        tmp_path / "flickr",
        tmp_path / "jsonl",
    ):
        by_image, folder = captioning.read_captions(config, str(spec))
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
    config = captioning.Config()
    names = _write_images(tmp_path / "images", n=3)
    (tmp_path / "captions.csv").write_text("image,caption\nimg0.png,a cat\nnope.jpg,a dog\n")
    with pytest.raises(UserError, match=r"1 image\(s\) not in .*'nope.jpg'"):
        captioning.read_captions(config, str(tmp_path))

    (tmp_path / "captions.csv").unlink()
    with pytest.raises(UserError, match="expected a captions file"):
        captioning.read_captions(config, str(tmp_path))

    (tmp_path / "x.token.txt").write_text("img0.png#0\ta cat\nimg1.png a dog without a tab\n")
    with pytest.raises(UserError, match=r"x.token.txt:2: expected IMAGE#N<TAB>caption"):
        captioning.read_captions(config, str(tmp_path))

    (tmp_path / "images" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(UserError, match="could not decode .*broken.jpg"):
        captioning._checked_image(str(tmp_path / "images" / "broken.jpg"))
    with pytest.raises(UserError, match="expected a readable image file"):
        captioning.image_bytes(str(tmp_path / "images" / "gone.jpg"))
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
    config = captioning.Config(backbone="mobilenet", weights=str(weights), image_size=64)
    refs = [f"builtin:{i}" for i in range(5)]
    first = captioning.FeatureCache(config, str(tmp_path / "cache"))
    a = first.features(refs)
    assert first.computed == 5 and a.shape[0] == 5 and a.dtype == np.float16
    second = captioning.FeatureCache(config, str(tmp_path / "cache"))
    b = second.features(refs + ["builtin:9"])
    assert second.computed == 1, "cached features were recomputed"
    np.testing.assert_array_equal(a, b[:5])
    other = captioning.FeatureCache(
        captioning.Config(backbone="mobilenet", weights=str(weights), image_size=96),
        str(tmp_path / "cache"),
    )
    other.features(refs[:1])
    assert other.computed == 1, "another image size must not reuse these features"


def test_missing_imagenet_weights_fail_fast_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    import lstm_recipes.data.tfds as tfds_lib

    monkeypatch.setattr(tfds_lib, "_online", lambda: False)
    with pytest.raises(UserError, match="--set weights=PATH/mobilenet_v2_weights"):
        captioning._weights(captioning.Config())


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
    from lstm_recipes import training

    module, config, _ = training.load_run(tiny_run)
    prep = training.read_json(tiny_run / "preprocessing.json")
    model = training.load_model(module, config, prep, tiny_run)
    captioner = captioning.Captioner(config, model, prep)
    images = [tf.io.encode_jpeg(captioning.scene(i, 70)[0]).numpy() for i in range(3)]
    images.append(tf.io.encode_png(captioning.scene(3, 20)[0]).numpy())
    beam = [t.decode() for t in captioner.caption(tf.constant(images), config.beam_width).numpy()]
    greedy = [t.decode() for t in captioner.caption(tf.constant(images), 1).numpy()]
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
    image.write_bytes(tf.io.encode_jpeg(captioning.scene(1, 64)[0]).numpy())
    result = cli_ok("predict", str(tiny_run), "--json", str(image))
    row = json.loads(result.output.strip().splitlines()[-1])
    assert row["image_bytes"] == str(image) and isinstance(row["caption"], str)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    bad = CliRunner().invoke(main, ["predict", str(tiny_run), str(text)])
    assert bad.exit_code == 2 and "rejected the input" in bad.output
    missing = CliRunner().invoke(main, ["predict", str(tiny_run), str(tmp_path / "none.jpg")])
    assert missing.exit_code == 2 and "expected a readable file" in missing.output


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
    config = captioning.Config(
        backbone="mobilenet",
        weights=str(weights),
        image_size=64,
        fine_tune=4,
        augment=True,
        feature_dim=8,
        embedding_dim=8,
        units=8,
        batch_size=4,
    )
    examples = captioning.builtin_examples(6)
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


def test_imagenet_weights_found_under_keras_home(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / name).write_bytes(b"placeholder")
    assert captioning._weights(captioning.Config()) == "imagenet"


def test_served_captioning_edge_inputs(tiny_run):
    results = run_edge_inputs(tiny_run / "export" / "1")
    corrupt = [r for r in results if r["case"] in ("not_an_image", "truncated_png", "empty_bytes")]
    assert corrupt and all(r["outcome"] == "InvalidArgumentError" for r in corrupt), corrupt
