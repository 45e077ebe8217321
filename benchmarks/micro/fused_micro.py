import os, time, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"]="2"
import numpy as np, tensorflow as tf, keras
B, T, D, U = int(sys.argv[1]), 230, 128, 64
rng = np.random.default_rng(0)
x = tf.constant(rng.normal(size=(B, T, D)).astype("float32"))
lengths = tf.constant(rng.integers(T // 2, T + 1, B).astype("int32"))
mask = tf.sequence_mask(lengths, T)
proj = tf.constant(rng.normal(size=(B, T, 2 * U)).astype("float32"))
bi = keras.layers.Bidirectional(keras.layers.LSTM(U, return_sequences=True))
bi.build((None, None, D))
fl, bl = bi.forward_layer.cell, bi.backward_layer.cell

def fused(x, lengths):
    xb = tf.reverse_sequence(x, lengths, seq_axis=1, batch_axis=0)
    xz = tf.stack([tf.einsum("btd,dk->tbk", x, fl.kernel) + fl.bias,
                   tf.einsum("btd,dk->tbk", xb, bl.kernel) + bl.bias], 1)  # T,2,B,4U
    R = tf.stack([tf.convert_to_tensor(fl.recurrent_kernel), tf.convert_to_tensor(bl.recurrent_kernel)])  # 2,U,4U
    def step(carry, z_t):
        h, c = carry
        z = z_t + tf.matmul(h, R)
        a = tf.sigmoid(z)
        i, f, _, o = tf.split(a, 4, axis=-1)
        g = tf.tanh(z[..., 2*U:3*U])
        c = f * c + i * g
        h = o * tf.tanh(c)
        return h, c
    zero = tf.zeros([2, tf.shape(x)[0], U])
    hs, cs = tf.scan(step, xz, initializer=(zero, zero))  # T,2,B,U
    m = tf.sequence_mask(lengths, tf.shape(x)[1], dtype=x.dtype)[:, :, None]
    hf = tf.transpose(hs[:, 0], (1, 0, 2)) * m
    hb = tf.reverse_sequence(tf.transpose(hs[:, 1], (1, 0, 2)), lengths, seq_axis=1, batch_axis=0) * m
    return tf.concat([hf, hb], -1)

def keras_f(x, lengths):
    return bi(x, mask=tf.sequence_mask(lengths, T))

def make(f):
    @tf.function
    def g():
        with tf.GradientTape() as t:
            loss = tf.reduce_sum(f(x, lengths) * proj)
        return loss, t.gradient(loss, bi.trainable_variables)
    return g
gf, gk = make(fused), make(keras_f)
(lf, grf), (lk, grk) = gf(), gk()
print("loss", float(lf), float(lk), "grad maxdiff", max(float(tf.reduce_max(tf.abs(a - c))) for a, c in zip(grf, grk)))
for name, g in [("fused", gf), ("keras", gk)] * 2:
    g(); t = time.time()
    for _ in range(5): g()
    dt = (time.time() - t) / 5
    print(name, f"{dt*1000:.1f} ms fwd+bwd  {float(tf.reduce_sum(lengths))/dt:.0f} real tok/s", flush=True)
