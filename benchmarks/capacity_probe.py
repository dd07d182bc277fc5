"""Memorisation probe of LMNLayer alone (issue 15's setup): which cause keeps it from storing?

G groups x NI items, a random preference A[g, i] = +-1 per pair, label ~ Bernoulli(sigmoid(1.5 A
+ b_i)); group and item embeddings (width 32) into a 200-80 MLP; LMN adds LMNLayer(item, group)
(4 heads, K = 32, query_norm, alpha = 0), its read-out concatenated to the MLP input; values
on legacy Adagrad (lr 0.3, start 1e-6), the rest on Adam 2e-3; 1 epoch of `--exposures`
samples per pair; test AUC on 200k fresh samples. `--model pair` adds a width-8 embedding of
the pair id (the reference). The flags isolate the causes:
  --fixed-emb     the memory is queried with frozen random group/item embeddings of its own
  --freeze-addr   the layer's query MLPs and keys do not train (only the values learn)
  --overlap       print how many slots pairs sharing an item / a group read in common
Prints one JSON line (and appends it to --json if given). Results: results/capacity_probe.md.

Example: python benchmarks/capacity_probe.py --items 1000 --fixed-emb --freeze-addr --sqrt-n 316
"""

import argparse
import json
import time

import numpy as np
import tensorflow as tf

import lmn_tf

p = argparse.ArgumentParser()
p.add_argument("--groups", type=int, default=100)
p.add_argument("--items", type=int, default=100)
p.add_argument("--exposures", type=int, default=20)
p.add_argument("--model", default="lmn")
p.add_argument("--sqrt-n", type=int, default=100)
p.add_argument("--top-k", type=int, default=32)
p.add_argument("--heads", type=int, default=4)
p.add_argument("--layer", default="{}")
p.add_argument("--vlr", type=float, default=0.3)
p.add_argument("--vacc", type=float, default=1e-6)
p.add_argument("--vopt", default="adagrad")
p.add_argument("--lr", type=float, default=2e-3)
p.add_argument("--epochs", type=int, default=1)
p.add_argument("--batch", type=int, default=1024)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--freeze-addr", action="store_true")
p.add_argument("--fixed-emb", action="store_true")
p.add_argument("--overlap", action="store_true")
p.add_argument("--qemb-trainable", action="store_true")
p.add_argument("--qhid", default="")
p.add_argument("--emb-std", type=float, default=0)
p.add_argument("--addr-lr", type=float, default=None,
               help="Adam learning rate of the layer's query MLPs and keys (default: --lr)")
p.add_argument("--defaults", action="store_true",
               help="LMNLayer(num_keys=--sqrt-n) with nothing else set (--layer still applies)")
p.add_argument("--drift", action="store_true",
               help="print the share of 2,000 pairs' slots at 50%% / 75%% / 90%% of the epoch "
               "still read at its end")
p.add_argument("--addr-warmup", type=float, default=0.0,
               help="with --addr-lr: the addressing learns at --lr for this share of the "
               "epoch first")
p.add_argument("--input-norm", action="store_true",
               help="the memory's inputs scaled to unit RMS per example (each input alone)")
p.add_argument("--qnorm", default="batch", choices=("batch", "layer", "moving"),
               help="query_norm's statistics: the batch's (the layer's), each query's own "
               "(LayerNorm over its d_k dimensions, as UltraMem), or the moving averages also "
               "in training")
p.add_argument("--decay", action="store_true",
               help="the rest of the model's (and the addressing's) Adam rate decays to 0 "
               "over the epoch (cosine)")
p.add_argument("--readout", default="concat", choices=("concat", "gated"),
               help="the read-out as one more MLP input, or added to the logit through a SiLU "
               "gate of the embeddings (Memory+ of Memory Layers at Scale)")
p.add_argument("--json", help="append the result line to this file")
a = p.parse_args()
rng = np.random.default_rng(a.seed)
G, NI = a.groups, a.items
A = rng.choice([-1.0, 1.0], size=(G, NI))
b = rng.normal(0, 0.5, NI)
logit = 1.5 * A + b[None]
prob = 1 / (1 + np.exp(-logit))


def sample(n, rng):
    g = rng.integers(0, G, n)
    i = rng.integers(0, NI, n)
    y = (rng.random(n) < prob[g, i]).astype(np.float32)
    return g.astype(np.int32), i.astype(np.int32), y, prob[g, i]


n_train = G * NI * a.exposures
pairs = np.repeat(np.arange(G * NI), a.exposures)
rng.shuffle(pairs)
gtr, itr = (pairs // NI).astype(np.int32), (pairs % NI).astype(np.int32)
ytr = (rng.random(n_train) < prob[gtr, itr]).astype(np.float32)
gte, ite, yte, pte = sample(200_000, rng)


def auc(y, s):
    o = np.argsort(s)
    r = np.empty(len(s))
    r[o] = np.arange(1, len(s) + 1)
    npos = y.sum()
    return (r[y == 1].sum() - npos * (npos + 1) / 2) / (npos * (len(y) - npos))


bayes = auc(yte, pte)
tf.keras.utils.set_random_seed(a.seed)
# The inference path folds the batch statistics into the query MLP: a per-query norm reads
# through the training path (it has no state to update, and the model has no dropout).
EVAL_TRAINING = a.qnorm == "layer"
if a.qnorm != "batch":
    _batch_normalize = lmn_tf.LMNLayer._normalize

    def _normalize(self, q, axis, keep, training, momentum=0.99, epsilon=1e-3):
        if a.qnorm == "moving":
            _batch_normalize(self, q, axis, keep, training)  # updates the moving moments
            return _batch_normalize(self, q, axis, keep, False)
        shape = tf.concat([tf.shape(q)[:-1], [self.num_heads, self.key_dim]], 0)
        qh = tf.reshape(q, shape)  # (B, L, H, d_k)
        m, v = tf.nn.moments(qh, -1, keepdims=True)
        return tf.reshape((qh - m) * tf.math.rsqrt(v + epsilon), tf.shape(q))

    lmn_tf.LMNLayer._normalize = _normalize


class M(tf.keras.Model):
    def __init__(self):
        super().__init__()
        ini = tf.keras.initializers.RandomNormal(stddev=a.emb_std) if a.emb_std else "uniform"
        self.ge = tf.keras.layers.Embedding(G, 32, embeddings_initializer=ini)
        self.ie = tf.keras.layers.Embedding(NI, 32, embeddings_initializer=ini)
        self.mlp = tf.keras.Sequential(
            [
                tf.keras.layers.Dense(200, "relu"),
                tf.keras.layers.Dense(80, "relu"),
                tf.keras.layers.Dense(1),
            ]
        )
        self.mem = None
        if a.model == "lmn":
            kw = dict(num_keys=a.sqrt_n)
            if not a.defaults:
                kw.update(top_k=a.top_k, num_heads=a.heads, key_dim=32, query_norm=True,
                          memory_loss_weight=0.0)
            kw.update(json.loads(a.layer))
            self.mem = lmn_tf.LMNLayer(**kw)
        if a.fixed_emb:
            self.qg = tf.keras.layers.Embedding(G, 32, trainable=a.qemb_trainable)
            self.qi = tf.keras.layers.Embedding(NI, 32, trainable=a.qemb_trainable)
        if a.model == "pair":
            self.pe = tf.keras.layers.Embedding(G * NI, 8)
        if a.readout == "gated":
            self.gate = tf.keras.layers.Dense(32, "silu")
            self.out = tf.keras.layers.Dense(1, use_bias=False)

    def memory_inputs(self, g, i):
        qi, qg = (self.qi(i), self.qg(g)) if a.fixed_emb else (self.ie(i), self.ge(g))
        if a.input_norm:
            qi, qg = (x * tf.math.rsqrt(tf.reduce_mean(x**2, -1, keepdims=True) + 1e-6)
                      for x in (qi, qg))
        return qi, qg

    def call(self, x, training=False):
        g, i = x
        ge, ie = self.ge(g), self.ie(i)
        h = [ge, ie]
        gated = 0.0
        if self.mem is not None:
            qi, qg = self.memory_inputs(g, i)
            r = self.mem(qi[:, None], qg, training=training)[:, 0]
            if a.readout == "gated":
                gated = self.out(r * self.gate(tf.concat(h, -1)))[:, 0]
            else:
                h.append(r)
        if a.model == "pair":
            h.append(self.pe(g * NI + i))
        return self.mlp(tf.concat(h, -1))[:, 0] + gated


m = M()
m((gtr[:2], itr[:2]))
vals = (
    m.mem.value_variables if m.mem else []  # the pair table trains with Adam, as the rest
)
vref = {v.ref() for v in vals}
addr = [v for v in (m.mem.trainable_variables if m.mem else []) if v.ref() not in vref]
if a.freeze_addr:
    vref |= {v.ref() for v in addr}
    addr = []
elif a.addr_lr is not None:
    vref |= {v.ref() for v in addr}
else:
    addr = []
dense = [v for v in m.trainable_variables if v.ref() not in vref]
n_steps = a.epochs * -(-G * NI * a.exposures // a.batch)


def rate(r):
    return tf.keras.optimizers.schedules.CosineDecay(r, n_steps) if a.decay else r


adam = tf.keras.optimizers.legacy.Adam(rate(a.lr))
addr_adam = tf.keras.optimizers.legacy.Adam(
    a.lr if a.addr_warmup else rate(a.addr_lr or a.lr))
if a.vopt == "adagrad":
    vopt = tf.keras.optimizers.legacy.Adagrad(a.vlr, initial_accumulator_value=a.vacc)
elif a.vopt == "sparse_adam":
    from lmn_tf.memory.optimizer import SparseAdam

    vopt = SparseAdam(a.vlr)
elif a.vopt == "sgd":
    vopt = tf.keras.optimizers.legacy.SGD(a.vlr)
else:
    vopt = tf.keras.optimizers.legacy.Adam(a.vlr)


@tf.function
def step(g, i, y):
    with tf.GradientTape() as t:
        logits = m((g, i), training=True)
        loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(y, logits))
        total = loss + sum(m.losses)  # the memory loss, when alpha > 0
    gr = t.gradient(total, dense + addr + vals)
    adam.apply_gradients(zip(gr[: len(dense)], dense, strict=True))
    if addr:
        addr_adam.apply_gradients(zip(gr[len(dense) : len(dense) + len(addr)], addr, strict=True))
    if vals:
        vopt.apply_gradients(zip(gr[len(dense) + len(addr) :], vals, strict=True))
    return loss




def slots(g, i):
    qi, qg = m.memory_inputs(g, i)
    _, sl = m.mem(qi[:, None], qg, return_slots=True, training=EVAL_TRAINING)
    return sl.numpy()[:, 0].reshape(len(g), -1)


def share_kept(before, after):  # per pair: the share of its earlier slots read at the end
    return float(np.mean([len(set(x) & set(y)) / len(set(x))
                          for x, y in zip(before, after, strict=True)]))


probe = (gte[:2000], ite[:2000])
total_steps = a.epochs * -(-n_train // a.batch)
marks = {int(total_steps * f): f for f in (0.5, 0.75, 0.9)} if a.drift and m.mem else {}
snapshots = {}
t0 = time.time()
steps = 0
for ep in range(a.epochs):
    perm = rng.permutation(n_train) if ep else np.arange(n_train)
    for s in range(0, n_train, a.batch):
        j = perm[s : s + a.batch]
        step(gtr[j], itr[j], ytr[j])
        steps += 1
        if a.addr_warmup and steps == int(a.addr_warmup * total_steps):
            addr_adam.learning_rate.assign(a.addr_lr or a.lr)  # a variable once applied
        if steps in marks:
            snapshots[marks[steps]] = slots(*probe)
tt = time.time() - t0
drift = {f"kept_from_{int(100 * f)}pct": round(share_kept(sl, slots(*probe)), 3)
         for f, sl in snapshots.items()}
pred = np.concatenate(
    [
        m((gte[s : s + 8192], ite[s : s + 8192]), training=EVAL_TRAINING).numpy()
        for s in range(0, len(gte), 8192)
    ]
)
r = auc(yte, pred)
base_ref = None
line = json.dumps(
    {
        "args": vars(a),
        "auc": round(float(r), 4),
        "bayes": round(float(bayes), 4),
        "train_s": round(tt, 1),
        "ms_step": round(1000 * tt / steps, 2),
        **drift,
    }
)
print(line)
if a.json:
    with open(a.json, "a") as f:
        f.write(line + "\n")

if a.overlap and m.mem is not None:
    n = 2000
    g = rng.integers(0, G, n).astype(np.int32)
    i = rng.integers(0, NI, n).astype(np.int32)
    g2 = ((g + rng.integers(1, G, n)) % G).astype(np.int32)
    i2 = ((i + rng.integers(1, NI, n)) % NI).astype(np.int32)
    base = slots(g, i)

    def ov(o):
        return np.mean([len(set(x) & set(y)) / len(set(x)) for x, y in zip(base, o, strict=True)])

    print(
        "overlap same-item",
        ov(slots(g2, i)),
        "same-group",
        ov(slots(g, i2)),
        "random",
        ov(slots(g2, i2)),
    )
    allsl = slots(gte[:20000], ite[:20000])
    print("coverage", len(np.unique(allsl)) / m.mem.num_slots)
