"""Distribution strategies: pick one of ``tf.distribute``'s, before TensorFlow starts.

``default`` trains on one device, as before. ``mirrored`` copies the model onto every local GPU
(or onto N logical CPU devices, for testing) and all-reduces the gradients. ``multi-worker``
does the same across machines (``MultiWorkerMirroredStrategy``, cluster from ``TF_CONFIG``).
``tpu`` uses ``TPUStrategy`` with the TPU named by the environment.

The global batch stays the config's ``batch_size``: Keras splits each batch across replicas,
and across workers the dataset is sharded by data (each worker reads its share of every batch).
Only the chief writes the run directory; other workers work in a temporary folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal

from lstm_recipes.errors import UserError

Strategy = Literal["default", "mirrored", "multi-worker", "tpu"]
STRATEGIES = ("default", "mirrored", "multi-worker", "tpu")
_MIRRORED: dict = {}


def check_name(name: str) -> str:
    """Return ``name`` if it is a strategy name, else raise a one-line UserError."""
    if name not in STRATEGIES:
        raise UserError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")
    return name


def split_cpu(devices: int) -> None:
    """Present the CPU as ``devices`` logical devices (so ``mirrored`` has replicas to test on).

    Must run before TensorFlow initializes its devices; a process that already has exactly that
    many logical CPU devices (e.g. a test session that split them at start) is accepted.

    Args:
        devices: the number of logical CPU devices; 0 or 1 leaves the CPU whole.
    """
    if devices <= 1:
        return
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    found = len(tf.config.get_logical_device_configuration(cpu) or [])
    if not found:
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * devices
            )
            return
        except RuntimeError:  # TensorFlow has started
            found = len(tf.config.list_logical_devices("CPU"))
    if found != devices:
        raise UserError(
            f"expected to split the CPU into {devices} logical devices before TensorFlow "
            f"started, found {found} already in place (it can be split once per process)"
        )


def tf_config() -> dict:
    """The parsed ``TF_CONFIG`` of a multi-worker job, checked for a cluster and a task."""
    raw = os.environ.get("TF_CONFIG")
    where = "see README, 'Training on several GPUs or machines'"
    if not raw:
        raise UserError(
            f"--strategy multi-worker: expected TF_CONFIG with the cluster and this task, found it unset ({where})"
        )
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise UserError(f"expected TF_CONFIG to be JSON, found {raw[:80]!r} ({e})") from None
    if not isinstance(value, dict) or not isinstance(value.get("task"), dict):
        keys = ", ".join(value) if isinstance(value, dict) else type(value).__name__
        raise UserError(
            'expected TF_CONFIG to hold "task": {"type": "worker", "index": N}, '
            f"found {keys or 'nothing'}"
        )
    task, cluster = value["task"], value.get("cluster")
    jobs = cluster.get(task.get("type")) if isinstance(cluster, dict) else None
    if not jobs or not isinstance(task.get("index"), int) or not 0 <= task["index"] < len(jobs):
        raise UserError(
            f"expected TF_CONFIG's task {task} to name a job and index in its cluster, found cluster {cluster}"
        )
    return value


def make_strategy(name: str, cpu_devices: int = 0):
    """The ``tf.distribute`` strategy called ``name``; create it before any other TF op.

    Args:
        name: one of ``STRATEGIES``.
        cpu_devices: for ``mirrored`` on a machine without GPUs, the number of logical CPU
            devices to mirror over (0: the CPU as one device).

    Returns:
        The strategy; ``default`` gives TensorFlow's default (one-device) strategy.
    """
    check_name(name)
    split_cpu(cpu_devices)
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = tuple(d.name for d in gpus or tf.config.list_logical_devices("CPU"))
        # One per process: a second MirroredStrategy over the same devices reuses the first's
        # collective keys and its all-reduces fail with a "shape mismatch" (several runs in
        # one process, as in tests).
        if devices not in _MIRRORED:
            _MIRRORED[devices] = tf.distribute.MirroredStrategy(list(devices))
        return _MIRRORED[devices]
    if name == "multi-worker":
        tf_config()
        # Collectives over gRPC between workers (NCCL when every worker has GPUs); the
        # constructor waits until every worker in TF_CONFIG has joined.
        return tf.distribute.MultiWorkerMirroredStrategy()
    # A Cloud TPU VM has its TPU attached ("local"); elsewhere TPU_NAME names a TPU node.
    tpu = os.environ.get("TPU_NAME") or ("local" if Path("/dev/accel0").exists() else None)
    if tpu is None:
        raise UserError(
            "--strategy tpu: expected a TPU (a Cloud TPU VM, or TPU_NAME naming one), found none"
        )
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError) as e:
        raise UserError(f"--strategy tpu: expected a reachable TPU {tpu!r}, found: {e}") from None
    return tf.distribute.TPUStrategy(resolver)


def shard_by_data(dataset):
    """``dataset`` sharded across workers by data: each worker keeps its share of every batch.

    The recipes' datasets come from in-memory tensors, not files, so sharding by file (the
    first choice of the default AUTO policy) cannot apply; saying DATA avoids the fallback.

    Args:
        dataset: a ``tf.data.Dataset`` of global batches.
    """
    import tensorflow as tf

    policy = tf.data.experimental.AutoShardPolicy
    # Streamed shards are split between workers by the recipe, which says so with OFF.
    if dataset.options().experimental_distribute.auto_shard_policy == policy.OFF:
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = policy.DATA
    return dataset.with_options(options)


def worker_of(name: str) -> tuple[int, int]:
    """(this worker's index, how many workers) that read input in a job of strategy ``name``:
    chief first, then the workers in TF_CONFIG's order; (0, 1) unless ``multi-worker``.

    Args:
        name: the config's ``strategy``.
    """
    if name != "multi-worker":
        return 0, 1
    value = tf_config()
    cluster, task = value["cluster"], value["task"]
    order = [("chief", i) for i in range(len(cluster.get("chief", [])))] + [
        ("worker", i) for i in range(len(cluster.get("worker", [])))
    ]
    return order.index((task["type"], task["index"])), len(order)


def is_chief(strategy) -> bool:
    """True for the worker that writes checkpoints, exports and the run directory.

    That is the ``chief`` task if the cluster has one, else worker 0; single-machine strategies
    are always the chief.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().jobs:
        return True
    if resolver.task_type == "chief":
        return True
    return (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and ("chief" not in resolver.cluster_spec().jobs)
    )


def describe(name: str, strategy) -> str:
    """One line for the progress output: strategy, replicas, and this worker's role."""
    line = f"strategy: {name}, {strategy.num_replicas_in_sync} replica(s) in sync"
    resolver = getattr(strategy, "cluster_resolver", None)
    if name == "multi-worker" and resolver is not None:
        workers = sum(
            len(resolver.cluster_spec().job_tasks(job))
            for job in resolver.cluster_spec().jobs
            if job in ("chief", "worker")
        )
        role = "chief" if is_chief(strategy) else "not the chief: writes only to a temporary folder"
        line += f"; task {resolver.task_type} {resolver.task_id} of {workers} workers ({role})"
    elif name == "mirrored":
        devices = strategy.extended.worker_devices
        line += f" on {', '.join(d.split('device:')[-1].lower() for d in devices)}"
    return line


@contextlib.contextmanager
def worker_dir():
    """A temporary folder for a non-chief worker's files, removed when training ends."""
    path = Path(tempfile.mkdtemp(prefix="lstm-recipes-worker-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _without_local_files(value):
    # A "local_file" is in the worker's own run directory: its path differs by design.
    if isinstance(value, dict):
        return {k: _without_local_files(v) for k, v in value.items() if k != "local_file"}
    if isinstance(value, list):
        return [_without_local_files(v) for v in value]
    return value


def check_same_on_every_worker(strategy, value, what: str) -> None:
    """Raise UserError unless every worker of a multi-worker job holds the same ``value``.

    Each worker fits its preprocessing itself; different data on one machine would otherwise
    train a model whose token ids mean different words on different workers.

    Args:
        strategy: the strategy; single-machine strategies have nothing to check.
        value: a JSON-able value (e.g. the fitted vocabulary and labels).
        what: its name, for the message.
    """
    import hashlib

    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    text = json.dumps(_without_local_files(value), sort_keys=True, default=str).encode()
    digest = float(int(hashlib.sha256(text).hexdigest()[:12], 16))  # exact in float64
    # In a tf.function: an eager cross-worker all-reduce warns of its overhead.
    summed = tf.function(
        lambda: strategy.run(
            lambda: tf.distribute.get_replica_context().all_reduce(
                "SUM", tf.constant(digest, "float64")
            )
        )
    )()
    total = strategy.experimental_local_results(summed)[0].numpy()
    if total != digest * strategy.num_replicas_in_sync:
        raise UserError(
            f"expected the same {what} on every worker, found it differs on some: "
            "give every worker the same --data (same files, same contents)"
        )
