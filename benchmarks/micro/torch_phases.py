# PyTorch 2.13 forward/backward/optimizer time per step of the reference model (batch 32 x 200),
# with oneDNN on and off. Run: nice -n -10 python benchmarks/micro/torch_phases.py
import time, torch, numpy as np
from torch import nn
rng = np.random.default_rng(0)
x = np.zeros((640, 200), np.int32)
for r in range(640): L = rng.integers(50, 201); x[r, -L:] = rng.integers(1, 20000, L)
d = {"x": x, "y": rng.integers(0, 2, 640).astype(np.float32)}
for mk in (True, False):
    torch.backends.mkldnn.enabled = mk
    torch.manual_seed(0)
    emb = nn.Embedding(20001, 128); lstm = nn.LSTM(128, 64, 2, bidirectional=True, batch_first=True); out = nn.Linear(128, 1)
    opt = torch.optim.Adam(list(emb.parameters()) + list(lstm.parameters()) + list(out.parameters()), 1e-3)
    ts = []
    for b in range(12):
        t = time.time()
        xb = torch.from_numpy(d["x"][b*32:(b+1)*32]).long(); yb = torch.from_numpy(d["y"][b*32:(b+1)*32])
        _, (h, _) = lstm(emb(xb)); loss = nn.functional.binary_cross_entropy_with_logits(out(torch.cat([h[-2], h[-1]], -1)).squeeze(-1), yb)
        opt.zero_grad(); t1 = time.time(); loss.backward(); t2 = time.time(); opt.step(); ts.append((t1-t, t2-t1, time.time()-t2))
    f, bw, st = np.median(np.array(ts[2:]), 0)
    print(f"mkldnn={mk}: fwd {f:.3f} bwd {bw:.3f} step {st:.3f}", flush=True)
