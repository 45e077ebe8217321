import os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"]="2"
import tensorflow as tf
intra, inter = int(sys.argv[3]), int(sys.argv[4])
if intra: tf.config.threading.set_intra_op_parallelism_threads(intra)
if inter: tf.config.threading.set_inter_op_parallelism_threads(inter)
import numpy as np, keras
B, T, D, U = int(sys.argv[1]), int(sys.argv[2]), 128, 64
rng = np.random.default_rng(0)
x = tf.constant(rng.normal(size=(B, T, D)).astype("float32"))
lengths = tf.constant(rng.integers(int(T * 0.85), T + 1, B).astype("int32"))
mask = tf.sequence_mask(lengths, T)
proj = tf.constant(rng.normal(size=(B, T, 2 * U)).astype("float32"))
bi = keras.layers.Bidirectional(keras.layers.LSTM(U, return_sequences=True)); bi.build((None, None, D))
@tf.function
def g():
    with tf.GradientTape() as t:
        loss = tf.reduce_sum(bi(x, mask=mask) * proj)
    return t.gradient(loss, bi.trainable_variables)
g()
best = 1e9
for _ in range(4):
    t0 = time.time(); g(); best = min(best, time.time() - t0)
print(f"B={B} intra={intra} inter={inter}: {best*1000:.0f} ms  {float(tf.reduce_sum(lengths))/best:,.0f} real tok/s", flush=True)
