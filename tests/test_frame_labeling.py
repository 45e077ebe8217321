"""frame_labeling: frame readers and their errors, windows, segment scoring, export, predict."""

import dataclasses
import gzip
import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from conftest import cli_ok
from serving_edges import run_edge_inputs

from lstm_recipes import metrics
from lstm_recipes import recipe as recipe_lib
from lstm_recipes.cli import main
from lstm_recipes.data import frame_files, reading, stream
from lstm_recipes.data import frames as frames_lib
from lstm_recipes.errors import UserError

frame_labeling = recipe_lib.load_recipe("frame_labeling")
TINY = frame_labeling.PRESETS["tiny"]


# ----------------------------------------------------------------------------- readers


def test_frames_long_csv_folder_and_errors(tmp_path):
    rows = ["sequence_id,step,x,y,label"]
    for seq in ("a", "b"):
        for step in reversed(range(5)):
            rows.append(f"{seq},{step},{step},{-step},{'up' if step < 3 else 'down'}")
    path = tmp_path / "frames.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    recordings, names = frames_lib.read_long_csv(path)
    assert names == ["x", "y"] and len(recordings) == 2
    np.testing.assert_array_equal(recordings[0].frames[:, 0], [0, 1, 2, 3, 4])
    assert list(recordings[0].labels) == ["up", "up", "up", "down", "down"]
    bad = tmp_path / "bad.csv"
    bad.write_text("sequence_id,step,x,label\na,0,1.5,up\na,1,oops,up\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.csv:3: expected a number, found 'oops'"):
        frames_lib.read_long_csv(bad)
    with pytest.raises(UserError, match="missing label, found sequence_id, step, x, y, activity"):
        frames_lib.read_long_csv(_rename_column(tmp_path, path))
    folder = tmp_path / "seqs"
    folder.mkdir()
    np.savez(folder / "one.npz", frames=np.ones((4, 2), np.float32), labels=np.array(["a"] * 4))
    (folder / "two.csv").write_text("x,y,label\n1,2,a\n3,4,b\n", encoding="utf-8")
    recordings, names = frames_lib.read_sequence_folder(folder)
    assert [r.frames.shape for r in recordings] == [(4, 2), (2, 2)]
    np.savez(folder / "three.npz", frames=np.ones((4, 3), np.float32), labels=np.array(["a"] * 4))
    with pytest.raises(UserError, match="expected 2 features like one.npz, found 3"):
        frames_lib.read_sequence_folder(folder)


def _rename_column(tmp_path, path):
    renamed = tmp_path / "renamed.csv"
    renamed.write_text(path.read_text().replace(",label", ",activity"), encoding="utf-8")
    return renamed


def test_builtin_frames_split_by_subject():
    splits = frame_labeling.load_data(frame_labeling.PRESETS["default"], "builtin")
    groups = [{r.group for r in part} for part in (splits.train, splits.validation, splits.test)]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert sum(map(len, groups)) == 10
    recording = splits.train[0]
    assert recording.frames.shape[1] == 6 and len(set(recording.labels)) == 7


@pytest.mark.parametrize("name", ["train.txt", "ud.conllu.gz", "tags.jsonl", "tfds:conll2003"])
def test_token_data_is_sent_to_the_tagging_recipe(tmp_path, name):
    spec = name if name.startswith("tfds:") else str(tmp_path / name)
    if not name.startswith("tfds:"):
        (tmp_path / name).write_bytes(b"the DT B-NP\n")
    with pytest.raises(UserError, match="looks like tagged tokens") as caught:
        frame_labeling.load_data(TINY, spec)
    message = str(caught.value)
    assert "\n" not in message
    assert f"lstm-recipes run tagging --data {spec}" in message


@pytest.mark.parametrize("preset", ["conll2000", "ud-upos", "upos-small"])
def test_token_presets_point_to_the_tagging_recipe(preset):
    with pytest.raises(UserError, match="tagging") as caught:
        recipe_lib.resolve_config(frame_labeling, preset, [])
    assert "\n" not in str(caught.value)
    tagging = recipe_lib.load_recipe("tagging")
    assert preset in tagging.PRESETS


def test_the_old_input_field_points_to_the_tagging_recipe():
    with pytest.raises(UserError, match="lstm-recipes run tagging") as caught:
        recipe_lib.resolve_config(frame_labeling, "default", ["input=tokens"])
    assert "\n" not in str(caught.value)


# ----------------------------------------------------------------------------- scoring


def test_segment_f1_on_hand_made_cases():
    gold = [list("aaaabbbbcc")]
    assert metrics.segment_f1(gold, gold) == 100.0
    # b shifted by one step: IoU 3/5 >= 0.5 still a hit; c missing entirely.
    pred = [list("aaaaabbbbb")]
    # a: IoU 4/5 hit; b: IoU 3/6 = 0.5 hit; c unmatched -> P 2/2, R 2/3.
    assert metrics.segment_f1(gold, pred) == pytest.approx(100 * 2 * 1 * (2 / 3) / (1 + 2 / 3))


def test_segment_f1_follows_ms_tcn_where_greedy_matching_differs():
    # Gold runs: a[0,4) b[4,6) a[6,10). Predicted: a[0,1) b[1,2) a[2,7) b[7,10).
    # MS-TCN, overlap 0.1: a[0,1) takes a[0,4) (IoU 1/4): TP. b[1,2) and b[7,10) reach no b run
    # (IoU < 0): FP. a[2,7)'s best run is a[0,4) (IoU 2/7 > a[6,10)'s 1/8), already matched: FP.
    # TP 1, FP 3, FN 2 -> P 1/4, R 1/3, F1 2/7. Matching the best *unused* run instead would
    # give a[2,7) to a[6,10): TP 2, F1 4/7.
    gold, pred = [list("aaaabbaaaa")], [list("abaaaaabbb")]
    assert metrics.segment_f1(gold, pred, 0.1) == pytest.approx(100 * 2 / 7)
    # At 0.5 neither a[0,1) (1/4) nor anything else is a hit.
    assert metrics.segment_f1(gold, pred, 0.5) == 0.0


# ----------------------------------------------------------------------------- model


def test_windowed_frames_equal_the_model_on_one_window_and_ignore_padding():
    config = recipe_lib.resolve_config(frame_labeling, "tiny", ["window=16", "stride=8"])
    prep = {"features": 3, "mean": [0.0] * 3, "std": [1.0] * 3}
    prep["labels"] = ["a", "b"]
    model = frame_labeling.build_model(config, prep)
    labeler = frame_labeling.Labeler(config, model, prep)
    x = np.random.default_rng(0).normal(size=(1, 16, 3)).astype("float32")
    _, probs = labeler(tf.constant(x))
    direct = tf.nn.softmax(model({"frames": x})[..., 1:]).numpy()
    np.testing.assert_allclose(probs.numpy(), direct, atol=1e-5)
    long = np.random.default_rng(1).normal(size=(2, 45, 3)).astype("float32")
    long[1, 30:] = np.nan
    labels, probs = labeler(tf.constant(long))
    assert labels.shape == (2, 45) and probs.shape == (2, 45, 2)
    assert set(labels.numpy()[1, 30:]) == {b""} and b"" not in set(labels.numpy()[0])
    np.testing.assert_allclose(probs.numpy().sum(-1), 1.0, atol=1e-5)


def test_frames_csv_end_to_end_and_the_printed_predict_command_works(tmp_path, monkeypatch):
    # Five features (the builtin data has six): the printed example must fit this model.
    rng = np.random.default_rng(0)
    rows = ["sequence_id,step,x,n1,n2,n3,n4,label"]
    for seq in range(12):
        for step in range(120):
            label = "walk" if (step // 30) % 2 == 0 else "rest"
            level = 2.0 if label == "walk" else -2.0
            noise = ",".join(f"{v:.3f}" for v in rng.normal(size=4))
            rows.append(f"s{seq},{step},{level + rng.normal():.3f},{noise},{label}")
    path = tmp_path / "frames.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    result = cli_ok(
        *("run", "frame_labeling", "--preset", "tiny", "--data", str(path), "--run-dir", "run"),
        *("--set", "window=32", "--set", "stride=16", "--set", "epochs=6"),
        *("--set", "learning_rate=0.01"),
    )
    scores = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert scores["accuracy"] > 0.8, scores
    assert 0.0 <= scores["segment_f1_50"] <= 100.0
    # The run's last line is a command a user can paste: run it as printed.
    (command,) = [line for line in result.output.splitlines() if line.startswith("Try it: ")]
    argv = shlex.split(command.removeprefix("Try it: "))
    assert argv[:2] == ["lstm-recipes", "predict"]
    answer = CliRunner().invoke(main, [*argv[1:], "--json"])
    assert answer.exit_code == 0, answer.output
    row = json.loads(answer.output.strip().splitlines()[-1])
    example = json.loads(argv[3])
    assert len(example[0]) == 5
    assert len(row["labels"]) == len(example) and set(row["labels"]) <= {"walk", "rest"}
    assert np.allclose(np.sum(row["probabilities"], -1), 1.0, atol=1e-3)
    # Served edge inputs: no frames, zero steps, NaN/inf/huge values, wrong widths.
    run_edge_inputs(tmp_path / "run" / "export" / "1")


def test_predict_reports_frames_of_the_wrong_width(tmp_path):
    from lstm_recipes import serve

    specs = {"frames": tf.TensorSpec([None, None, 3], tf.float32)}
    with pytest.raises(UserError, match="expected a list of frames of 3 numbers each"):
        serve._predict_frames(None, specs, ["[[1, 2]]"])
    with pytest.raises(UserError, match="expected a JSON list of frames"):
        serve._predict_frames(None, specs, ["walk"])


# ----------------------------------------------------------------------------- streamed globs


def frame_sequences(subjects: int = 40, per_subject: int = 2, seed: int = 0):
    """(sequence id, subject, frames (T, 3), labels (T,)): learnable (feature 0's level follows
    the label), with a NaN and an inf here and there that the scales must ignore."""
    rng = np.random.default_rng(seed)
    sequences = []
    for s in range(subjects):
        for k in range(per_subject):
            steps = int(rng.integers(40, 90))
            labels = np.array(["walk" if (t // 20) % 2 == 0 else "rest" for t in range(steps)])
            x = rng.normal(size=(steps, 3)).astype(np.float32)
            x[:, 0] += np.where(labels == "walk", 2.0, -2.0)
            x[rng.integers(steps), 1] = np.nan
            x[rng.integers(steps), 2] = np.inf
            sequences.append((f"q{s}-{k}", f"subject{s}", np.round(x, 3), labels))
    return sequences


def write_npz_files(folder, sequences) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for sequence, _, x, y in sequences:
        np.savez(folder / f"{sequence}.npz", frames=x, labels=y)
    return str(folder / "*.npz")


def write_long_shards(folder, sequences, shards: int = 3, ragged_line: int = 0) -> str:
    """Long-CSV shards (sequence_id, subject, step, f0..f2, label), rows shuffled within each
    shard; ``ragged_line``: that line of part-001 gets an extra field."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(shards):
        rows = [
            f"{sequence},{subject},{t},{','.join(map(str, x[t]))},{y[t]}"
            for sequence, subject, x, y in sequences[i::shards]
            for t in range(len(x))
        ]
        rows = [rows[j] for j in rng.permutation(len(rows))]
        if i == 1 and ragged_line:
            rows[ragged_line - 2] += ",extra"
        text = "sequence_id,subject,step,f0,f1,f2,label\n" + "\n".join(rows) + "\n"
        with gzip.open(folder / f"part-{i:03d}.csv.gz", "wt", encoding="utf-8") as f:
            f.write(text)
    return str(folder / "part-*.csv.gz")


def glob_config(*settings):
    return recipe_lib.resolve_config(frame_labeling, "tiny", ["max_examples=0", *settings])


def streamed_train(splits) -> list:
    return [r for batch in splits.train.batches() for r in batch[frame_files.RECORDING]]


@pytest.mark.parametrize("form", ["npz", "shards"])
def test_frame_globs_split_by_group_disjointly_and_the_same_on_a_rerun(tmp_path, form):
    sequences = frame_sequences()
    if form == "npz":
        spec, config = write_npz_files(tmp_path / "f", sequences), glob_config()
    else:
        spec = write_long_shards(tmp_path / "f", sequences)
        config = glob_config("group_column=subject")
    splits = frame_labeling.load_data(config, spec)
    assert isinstance(splits.train, stream.Stream)
    parts = [streamed_train(splits), splits.validation, splits.test]
    groups = [{r.group for r in part} for part in parts]
    assert all(groups) and not (
        groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2]
    )
    assert sum(map(len, parts)) == len(sequences) and len(parts[0]) == len(splits.train)
    again = frame_labeling.load_data(config, spec)
    names = lambda part: sorted(r.name for r in part)  # noqa: E731
    assert names(streamed_train(again)) == names(parts[0])
    assert names(again.validation) == names(parts[1]) and names(again.test) == names(parts[2])
    limited = frame_labeling.load_data(dataclasses.replace(config, max_examples=9), spec)
    assert 9 <= len(limited.train) == len(streamed_train(limited)) <= 11


def in_memory_twins(form: str, spec: str, config, recordings) -> list:
    """The same sequences read by the in-memory readers (a folder; each shard as one file)."""
    if form == "npz":
        found, _ = frames_lib.read_sequence_folder(Path(spec).parent)
    else:
        found = [
            r
            for shard in sorted(Path(spec).parent.glob("part-*"))
            for r in frames_lib.read_long_csv(shard, group_column=config.group_column)[0]
        ]
    by_name = {r.name: r for r in found}
    return [by_name[r.name] for r in recordings]


def all_windows(dataset) -> list[tuple[bytes, bytes]]:
    pairs = [
        (y.tobytes(), x.tobytes())
        for xs, ys in dataset
        for x, y in zip(xs["frames"].numpy(), ys.numpy())
    ]
    return sorted(pairs)


@pytest.mark.parametrize("form", ["npz", "shards"])
def test_streamed_windows_and_scales_equal_the_in_memory_ones(tmp_path, form):
    sequences = frame_sequences(subjects=20)
    if form == "npz":
        spec, config = write_npz_files(tmp_path / "f", sequences), glob_config()
    else:
        spec = write_long_shards(tmp_path / "f", sequences)
        config = glob_config("group_column=subject")
    config = dataclasses.replace(config, window=32, validation_size=0.25, test_size=0.25)
    splits = frame_labeling.load_data(config, spec)
    streamed = streamed_train(splits)
    twins = in_memory_twins(form, spec, config, streamed)
    for r, twin in zip(streamed, twins):
        np.testing.assert_array_equal(r.frames, twin.frames)
        assert list(r.labels) == list(twin.labels) and r.group == twin.group
    prep = frame_labeling.fit_preprocessing(config, splits.train)
    reference = frame_labeling.fit_preprocessing(config, twins)
    assert prep["labels"] == reference["labels"] and prep["features"] == reference["features"] == 3
    np.testing.assert_allclose(prep["mean"], reference["mean"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(prep["std"], reference["std"], rtol=1e-5)
    windows = all_windows(frame_labeling.batches(config, prep, splits.train, training=True))
    expected = all_windows(frame_labeling.batches(config, prep, twins, training=True))
    assert len(windows) == len(expected) > len(twins)
    assert windows == expected


def test_a_sequence_in_two_shards_is_refused_naming_both(tmp_path):
    sequences = frame_sequences(subjects=6)
    spec = write_long_shards(tmp_path / "f", sequences, shards=2)
    extra = sequences[0][0]  # in part-000; written again into part-001
    with gzip.open(tmp_path / "f" / "part-001.csv.gz", "at", encoding="utf-8") as f:
        f.write(f"{extra},subject0,99,1,2,3,walk\n")
    with pytest.raises(
        UserError, match=f"sequence '{extra}' in .*part-000.csv.gz and in .*part-001.csv.gz"
    ) as caught:
        frame_labeling.load_data(glob_config("group_column=subject"), spec)
    assert "\n" not in str(caught.value)


def test_a_ragged_row_mid_shard_is_refused_with_file_and_line_or_skipped(tmp_path):
    spec = write_long_shards(tmp_path / "f", frame_sequences(subjects=20), ragged_line=30)
    config = glob_config("group_column=subject", "validation_size=0.25", "test_size=0.25")
    message = r"part-001.csv.gz:30: expected 7 fields like the header, found 8"
    with pytest.raises(UserError, match=message) as caught, reading.options_of(config):
        frame_labeling.load_data(config, spec)
    assert "\n" not in str(caught.value)
    skipping = dataclasses.replace(config, skip_bad_rows=1)
    with reading.options_of(skipping) as report:
        splits = frame_labeling.load_data(skipping, spec)
    assert report.skipped_count == 1 and "part-001.csv.gz:30" in report.skipped[0]
    # The later passes (fitting, every epoch) skip it too, outside the loading's settings.
    prep = frame_labeling.fit_preprocessing(skipping, splits.train)
    assert all_windows(frame_labeling.batches(skipping, prep, splits.train, training=True))


def test_validation_data_is_used_as_given_for_a_folder_and_a_glob(tmp_path):
    held = frame_sequences(subjects=3, seed=5)
    held = [(f"v{s}", f"held{g}", x, y) for s, g, x, y in held]
    validation = write_npz_files(tmp_path / "val", held)
    folder = Path(write_npz_files(tmp_path / "f", frame_sequences(subjects=10))).parent
    config = glob_config()
    for data in (str(folder), str(folder / "*.npz")):
        splits = frame_labeling.load_data(config, data, validation_data=validation)
        assert sorted(r.name for r in splits.validation) == sorted(f"{s}.npz" for s, *_ in held)
        # Nothing is carved for validation: train and test hold every sequence of --data.
        train = splits.train if isinstance(splits.train, list) else streamed_train(splits)
        assert len(train) + len(splits.test) == 20, data


def test_a_shard_glob_trains_evaluates_and_exports_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = write_long_shards(tmp_path / "f", frame_sequences(), ragged_line=30)
    held = [(f"v{i}", "held", x, y) for i, (_, _, x, y) in enumerate(frame_sequences(3, seed=7))]
    validation = write_npz_files(tmp_path / "val", held)
    args = ["run", "frame_labeling", "--preset", "tiny", "--data", spec, "--run-dir", "run"]
    args += ["--set", "group_column=subject", "--set", "window=32", "--set", "stride=16"]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code != 0 and not (tmp_path / "run").exists()
    assert "part-001.csv.gz:30: expected 7 fields like the header, found 8" in refused.output
    cli_ok(
        *args,
        *("--set", "skip_bad_rows=1", "--set", "epochs=4", "--set", "learning_rate=0.01"),
        *("--validation-data", validation),
    )
    run = tmp_path / "run"
    scores = json.loads((run / "metrics.json").read_text())
    assert scores["accuracy"] > 0.8, scores
    assert json.loads((run / "data_report.json").read_text())["skipped_rows"] == 1
    assert json.loads((run / "run.json").read_text())["sizes"]["validation"] == len(held)
    assert (run / "export" / "1" / "saved_model.pb").exists()


def test_parquet_and_tfrecord_long_shards_read_and_split_as_the_csv_shards(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    sequences = frame_sequences()
    csv_spec = write_long_shards(tmp_path / "csv", sequences)
    folder = tmp_path / "parquet"
    folder.mkdir()
    (tmp_path / "tfrecord").mkdir()
    for i in range(3):
        part = sequences[i::3]
        columns = {"sequence_id": [], "subject": [], "step": [], "label": []}
        columns.update({f"f{j}": [] for j in range(3)})
        for sequence, subject, x, y in part:
            for t in range(len(x)):
                columns["sequence_id"].append(sequence)
                columns["subject"].append(subject)
                columns["step"].append(t)
                columns["label"].append(str(y[t]))
                for j in range(3):
                    columns[f"f{j}"].append(float(x[t, j]))
        pq.write_table(pa.table(columns), folder / f"part-{i:03d}.parquet", row_group_size=100)
        write_examples(tmp_path / "tfrecord" / f"part-{i:03d}.tfrecord.gz", columns)
    config = glob_config("group_column=subject")

    def by_id(splits):
        parts = [streamed_train(splits), splits.validation, splits.test]
        return [
            {r.name.split(":")[1]: (r.frames.tobytes(), r.labels.tolist(), r.group) for r in part}
            for part in parts
        ]

    from_csv = by_id(frame_labeling.load_data(config, csv_spec))
    from_parquet = by_id(frame_labeling.load_data(config, str(folder / "part-*.parquet")))
    assert from_parquet == from_csv  # the same sequences, frames, labels and split
    assert sum(map(len, from_parquet)) == len(sequences)
    from_tfrecord = by_id(frame_labeling.load_data(config, str(tmp_path / "tfrecord" / "*.gz")))
    assert from_tfrecord == from_csv


def write_examples(path, columns: dict) -> None:
    """One tf.train.Example per row of ``columns``, with each value's own type."""
    import tensorflow as tf

    def feature(value):
        if isinstance(value, str):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        if isinstance(value, int):
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        return tf.train.Feature(float_list=tf.train.FloatList(value=[value]))

    with tf.io.TFRecordWriter(str(path), "GZIP") as writer:
        for row in zip(*columns.values()):
            features = {name: feature(v) for name, v in zip(columns, row)}
            example = tf.train.Example(features=tf.train.Features(feature=features))
            writer.write(example.SerializeToString())


def test_a_tfrecord_shard_that_is_not_one_is_refused_in_one_line(tmp_path):
    (tmp_path / "part-000.tfrecord").write_bytes(b"not a tfrecord file at all")
    with pytest.raises(
        UserError, match="expected TFRecord files of tf.train.Example at .*part-000"
    ):
        frame_labeling.load_data(glob_config(), str(tmp_path / "*.tfrecord"))
