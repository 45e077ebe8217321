# Share of real tokens in padded batches of IMDB's training reviews: geometric vs quantile edges.
# Run: python benchmarks/micro/padding_sim.py  (needs ../shared/data/sentiment/imdb/train.csv.gz)
import gzip, csv, re, numpy as np, random
rows = list(csv.DictReader(gzip.open("../shared/data/sentiment/imdb/train.csv.gz", "rt")))
L = np.array([min(1000, max(1, len(re.sub(r"[^\w\s!?']", " ", r["text"].lower().replace("<br />"," ")).split()))) for r in rows])
print("n", len(L), "mean", L.mean(), "pcts", np.percentile(L, [10,25,50,75,90,99]))
def edges_geo(maxlen, start=8, growth=1.3):
    e, x = [], start
    while x < maxlen: e.append(x); x = int(x*growth)+1
    return e
def waste(edges, B, seed=0):
    rng = random.Random(seed); idx = list(range(len(L))); rng.shuffle(idx)
    buckets = {}; padded = real = 0; nb = 0
    for i in idx:
        l = L[i]; b = np.searchsorted(edges, l, side="right")
        buckets.setdefault(b, []).append(l)
        if len(buckets[b]) == B:
            padded += max(buckets[b]) * B; real += sum(buckets[b]); nb += 1; buckets[b] = []
    for v in buckets.values():
        if v: padded += max(v)*len(v); real += sum(v); nb += 1
    return real/padded, nb
for B in (32, 128):
    print("B", B, "geo", waste(edges_geo(1000), B), len(edges_geo(1000)))
    for nbk in (16, 32, 64):
        e = sorted(set(np.percentile(L, np.linspace(0, 100, nbk+1)[1:-1]).astype(int).tolist()))
        print("   pct", nbk, waste(e, B))
