import os, time
os.environ["TF_CPP_MIN_LOG_LEVEL"]="2"
import numpy as np, tensorflow as tf, keras
from tensorflow.python.ops import rnn_grad  # noqa
B, T, D, U = 32, 230, 128, 64
rng = np.random.default_rng(0)
x = tf.constant(rng.normal(size=(B, T, D)).astype("float32"))
W = tf.Variable(rng.normal(size=(D, 4*U)).astype("float32") * 0.1)
R = tf.Variable(rng.normal(size=(U, 4*U)).astype("float32") * 0.1)
b = tf.Variable(rng.normal(size=(4*U,)).astype("float32") * 0.1)
proj = tf.constant(rng.normal(size=(B, T, U)).astype("float32"))
lay = keras.layers.LSTM(U, return_sequences=True, return_state=True)
lay.build((None, None, D))
lay.cell.kernel.assign(W); lay.cell.recurrent_kernel.assign(R); lay.cell.bias.assign(b)

def block(x):
    z = tf.zeros([B, U]); zu = tf.zeros([U])
    _, cs, _, _, _, _, hs = tf.raw_ops.BlockLSTMV2(seq_len_max=tf.constant(T, tf.int64), x=tf.transpose(x, (1,0,2)), cs_prev=z, h_prev=z, w=tf.concat([W, R], 0), wci=zu, wcf=zu, wco=zu, b=b, cell_clip=0.0, use_peephole=False)
    return tf.transpose(hs, (1,0,2)), cs[-1]
def keras_f(x):
    hs, h, c = lay(x)
    return hs, c
def lossgrad(f):
    @tf.function
    def g():
        with tf.GradientTape() as t:
            hs, c = f(x)
            loss = tf.reduce_sum(hs * proj) + tf.reduce_sum(c)
        return loss, t.gradient(loss, [W, R, b] if f is block else [lay.cell.kernel, lay.cell.recurrent_kernel, lay.cell.bias])
    return g
gb, gk = lossgrad(block), lossgrad(keras_f)
lb, grads_b = gb(); lk, grads_k = gk()
print("loss", float(lb), float(lk))
for a, c in zip(grads_b, grads_k): print("grad maxdiff", float(tf.reduce_max(tf.abs(a - c))), float(tf.reduce_max(tf.abs(c))))
for name, g in [("block", gb), ("keras", gk)] * 2:
    g(); t = time.time()
    for _ in range(10): g()
    print(name, f"{(time.time()-t)/10*1000:.1f} ms fwd+bwd")
