import os, time, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"]="2"
import numpy as np, tensorflow as tf, keras
from keras import layers

@keras.saving.register_keras_serializable("proto")
class FastLSTM(layers.LSTM):
    def inner_loop(self, sequences, initial_state, mask, training=False):
        cell = self.cell
        x = sequences
        B = tf.shape(x)[0]; T = tf.shape(x)[1]
        if mask is None:
            lengths = tf.fill([B], T)
        else:
            lengths = tf.reduce_sum(tf.cast(mask, tf.int32), 1)
        if self.go_backwards:
            x = tf.reverse_sequence(x, lengths, seq_axis=1, batch_axis=0)
        k = cell.kernel; u = cell.recurrent_kernel; b = cell.bias
        from tensorflow.python.ops import rnn_grad  # noqa registers the gradient
        xt = tf.transpose(x, (1, 0, 2))
        w = tf.concat([k, u], 0)
        zeros = tf.zeros([cell.units], x.dtype)
        _, cs, _, _, _, _, hs = tf.raw_ops.BlockLSTMV2(seq_len_max=tf.cast(T, tf.int64), x=xt, cs_prev=initial_state[1], h_prev=initial_state[0], w=w, wci=zeros, wcf=zeros, wco=zeros, b=b, cell_clip=0.0, use_peephole=False)
        hs = tf.transpose(hs, (1, 0, 2)); cs = tf.transpose(cs, (1, 0, 2))
        idx = tf.maximum(lengths - 1, 0)
        h_last = tf.gather(hs, idx, batch_dims=1); c_last = tf.gather(cs, idx, batch_dims=1)
        empty = (lengths == 0)[:, None]
        h_last = tf.where(empty, initial_state[0], h_last); c_last = tf.where(empty, initial_state[1], c_last)
        m = tf.sequence_mask(lengths, T, dtype=hs.dtype)[:, :, None]
        outputs = hs * m
        if self.go_backwards:
            outputs = tf.reverse(tf.reverse_sequence(outputs, lengths, seq_axis=1, batch_axis=0), axis=[1])
        return h_last, outputs, [h_last, c_last]

def build(cls, layers_n=2):
    tok = keras.Input((None,), dtype="int32")
    x = layers.Embedding(20002, 128, mask_zero=True)(tok)
    for i in range(layers_n):
        x = layers.Bidirectional(cls(64, return_sequences=i < layers_n-1))(x)
    out = layers.Dense(2, activation="softmax")(x)
    m = keras.Model(tok, out)
    m.compile("adam", "sparse_categorical_crossentropy")
    return m

rng = np.random.default_rng(0)
B, T = 32, int(sys.argv[1]) if len(sys.argv)>1 else 230
lens = rng.integers(T//2, T+1, B)
ids = np.zeros((B, T), np.int32)
for r, L in enumerate(lens): ids[r, :L] = rng.integers(1, 20000, L)
y = rng.integers(0, 2, B)
keras.utils.set_random_seed(0); ref = build(layers.LSTM)
keras.utils.set_random_seed(0); fast = build(FastLSTM)
fast.set_weights(ref.get_weights())
print("max |diff| predict", np.abs(ref.predict(ids, verbose=0) - fast.predict(ids, verbose=0)).max())
# gradient equality
with tf.GradientTape() as t1: l1 = tf.reduce_sum(ref(ids, training=True)[:, 0])
g1 = t1.gradient(l1, ref.trainable_variables)
with tf.GradientTape() as t2: l2 = tf.reduce_sum(fast(ids, training=True)[:, 0])
g2 = t2.gradient(l2, fast.trainable_variables)
print("max grad diff", max(float(tf.reduce_max(tf.abs(tf.convert_to_tensor(a) - tf.convert_to_tensor(b)))) for a, b in zip(g1, g2)))
for name, m in [("keras", ref), ("fast", fast), ("keras", ref), ("fast", fast)]:
    m.train_on_batch(ids, y)
    t = time.time()
    for _ in range(10): m.train_on_batch(ids, y)
    print(name, f"{(time.time()-t)/10*1000:.1f} ms/step")
