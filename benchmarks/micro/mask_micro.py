import os, time, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"]="2"
import numpy as np, tensorflow as tf, keras
B, T, D, U = int(sys.argv[1]), int(sys.argv[2]), 128, 64
rng = np.random.default_rng(0)
x = tf.constant(rng.normal(size=(B, T, D)).astype("float32"))
lengths = tf.constant(rng.integers(int(T * 0.85), T + 1, B).astype("int32"))
mask = tf.sequence_mask(lengths, T)

def fast_inner(self, sequences, initial_state, mask, training=False):
    cell = self.cell
    B_ = tf.shape(sequences)[0]; T_ = tf.shape(sequences)[1]
    lengths = tf.fill([B_], T_) if mask is None else tf.reduce_sum(tf.cast(mask, tf.int32), 1)
    xs = sequences
    if self.go_backwards:
        xs = tf.reverse_sequence(xs, lengths, seq_axis=1, batch_axis=0)
    xz = tf.einsum("btd,dk->tbk", xs, cell.kernel) + cell.bias
    u = tf.convert_to_tensor(cell.recurrent_kernel)
    n = cell.units
    def step(carry, z_t):
        h, c = carry
        z = z_t + tf.matmul(h, u)
        a = tf.sigmoid(z)
        i, f, _, o = tf.split(a, 4, axis=1)
        c = f * c + i * tf.tanh(z[:, 2 * n:3 * n])
        h = o * tf.tanh(c)
        return h, c
    hs, cs = tf.scan(step, xz, initializer=(initial_state[0], initial_state[1]))
    hs = tf.transpose(hs, (1, 0, 2)); cs = tf.transpose(cs, (1, 0, 2))
    idx = tf.maximum(lengths - 1, 0)
    h_last = tf.gather(hs, idx, batch_dims=1); c_last = tf.gather(cs, idx, batch_dims=1)
    out = hs * tf.sequence_mask(lengths, T_, dtype=hs.dtype)[:, :, None]
    if self.go_backwards:
        out = tf.reverse(tf.reverse_sequence(out, lengths, seq_axis=1, batch_axis=0), axis=[1])
    return h_last, out, [h_last, c_last]

@keras.saving.register_keras_serializable("p")
class FastLSTM(keras.layers.LSTM):
    inner_loop = fast_inner

proj = tf.constant(rng.normal(size=(B, T, 2 * U)).astype("float32"))
def make(cls, use_mask):
    bi = keras.layers.Bidirectional(cls(U, return_sequences=True)); bi.build((None, None, D))
    @tf.function
    def g():
        with tf.GradientTape() as t:
            loss = tf.reduce_sum(bi(x, mask=mask if use_mask else None) * proj)
        return t.gradient(loss, bi.trainable_variables)
    return g
cands = {"keras+mask": make(keras.layers.LSTM, True), "keras nomask": make(keras.layers.LSTM, False), "fast+mask": make(FastLSTM, True)}
for g in cands.values(): g()
for rep in range(2):
    for name, g in cands.items():
        t0 = time.time()
        for _ in range(3): g()
        dt = (time.time() - t0) / 3
        print(rep, name, f"{dt*1000:.0f} ms  {float(tf.reduce_sum(lengths))/dt:,.0f} real tok/s", flush=True)
