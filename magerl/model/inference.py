"""PolicyNet's forward pass for one decision, in numpy.

A worker asks the network one decision at a time on one CPU core. At that size PyTorch
spends its time dispatching ~100 small operations, not computing: the same arithmetic
written against numpy takes a fraction of the time (`bench/decision_latency.py`).
It holds a copy of the weights, taken when an agent is made: an agent plays its game
with the weights, and the version, it started with. `tests/test_model.py` holds this to
the torch forward.

The copy is arranged for the fewest operations per decision, each exact up to float
rounding: weight matrices stored transposed (which halves the time of each product),
each block's layer norms folded into the products that follow them, the attention scale
folded into the queries. The heads read only the global token, the two seats and the
objects a candidate refers to, so the last block runs its queries, output projection and
feed-forward for those rows alone (keys and values still come from every token).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from magerl.model.network import PolicyNet

_TOP_ROWS = np.arange(3)  # the global token and the two seats, ahead of the objects


def _standardize(x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """A layer norm without its weight and bias (those live in the next product)."""
    scale = np.float32(1 / x.shape[-1])  # ndarray.mean() costs more than the sum in its Python wrapper
    centred = x - np.add.reduce(x, -1, keepdims=True) * scale
    centred *= 1 / np.sqrt(np.add.reduce(centred * centred, -1, keepdims=True) * scale + eps)
    return centred


class _Block(NamedTuple):
    """One transformer block's products as `x @ w + b`, the layer norm before each folded in."""

    qkv_w: np.ndarray
    qkv_b: np.ndarray
    out_w: np.ndarray
    out_b: np.ndarray
    ff1_w: np.ndarray
    ff1_b: np.ndarray
    ff2_w: np.ndarray
    ff2_b: np.ndarray


class NumpyPolicy:
    """`PolicyNet` evaluated on a batch of one: `(logits [C], value)` from `encoding.single`'s arrays."""

    def __init__(self, model: PolicyNet) -> None:
        self.config = model.config
        d, heads = model.config.d_model, model.config.heads
        p = {name: t.detach().cpu().numpy().astype(np.float32) for name, t in model.state_dict().items()}

        def product(name: str, norm: str | None = None) -> tuple[np.ndarray, np.ndarray]:
            """`(w, b)` with `x @ w + b` = the layer `name` applied to `norm(x)` (or to `x`)."""
            w, b = p[f"{name}.weight"].T, p[f"{name}.bias"]
            if norm is not None:  # (c * g + beta) @ w + b = c @ (g[:, None] * w) + (beta @ w + b)
                w, b = p[f"{norm}.weight"][:, None] * w, p[f"{norm}.bias"] @ w + b
            return np.ascontiguousarray(w, np.float32), np.asarray(b, np.float32)

        self.blocks = []
        for i in range(model.config.layers):
            k = f"blocks.{i}"
            qkv_w, qkv_b = product(f"{k}.qkv", f"{k}.norm1")
            qkv_w[:, :d] *= 1 / np.sqrt(d // heads)  # the attention scale, on the queries
            qkv_b[:d] *= 1 / np.sqrt(d // heads)
            self.blocks.append(_Block(qkv_w, qkv_b, *product(f"{k}.out"), *product(f"{k}.ff.0", f"{k}.norm2"),
                                      *product(f"{k}.ff.2")))
        self.object_proj, self.player_proj, self.global_proj = (product(n) for n in
                                                                 ("object_proj", "player_proj", "global_proj"))
        self.norm = p["norm.weight"], p["norm.bias"]
        self.names, self.kinds, self.no_player = p["name_embedding.weight"], p["kind_embedding.weight"], p["no_player"]
        self.flag_proj, self.score2, self.value0, self.value2 = (product(n) for n in
                                                                  ("flag_proj", "score.2", "value.0", "value.2"))
        w, b = product("score.0")  # its input is [candidate, global]: two products, no concatenation
        self.score_candidate, self.score_global, self.score_b = np.ascontiguousarray(w[:d]), w[d:].copy(), b

    def __call__(self, b: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
        heads = self.config.heads
        (wo, bo), (wp, bp), (wg, bg) = self.object_proj, self.player_proj, self.global_proj
        h = np.concatenate([b["glob"] @ wg + bg, b["players"][0] @ wp + bp,
                            b["objects"][0] @ wo + bo + self.names[b["names"][0]]])  # [T, d]
        masked = np.concatenate([np.zeros(3, bool), ~b["object_mask"][0]])
        masking = bool(masked.any())  # only a board without objects has padding in a batch of one
        t, d = h.shape
        refs = b["refs"][0]  # [C, R], -1 where a candidate refers to fewer objects
        read = np.unique(np.maximum(refs, 0))  # the objects the heads read (object 0 stands in for "none")
        rows = np.concatenate([_TOP_ROWS, read + 3])
        for i, block in enumerate(self.blocks):
            qkv = _standardize(h) @ block.qkv_w + block.qkv_b
            q, key, v = qkv.reshape(t, 3, heads, d // heads).transpose(1, 2, 0, 3)  # each [heads, T, dh]
            if i == len(self.blocks) - 1:  # past here only `rows` are read
                q, h = q[:, rows], h[rows]
            scores = q @ key.transpose(0, 2, 1)
            if masking:
                scores[:, :, masked] = -np.inf
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            attention = (scores / scores.sum(-1, keepdims=True)) @ v  # [heads, rows, dh]
            h = h + (attention.transpose(1, 0, 2).reshape(len(h), d) @ block.out_w + block.out_b)
            hidden = np.maximum(_standardize(h) @ block.ff1_w + block.ff1_b, 0)
            h = h + (hidden @ block.ff2_w + block.ff2_b)
        h = _standardize(h)
        h *= self.norm[0]
        h += self.norm[1]
        g, seats, o = h[0], h[1:3], h[3:]  # o: the objects in `read`, in its order

        valid = refs >= 0
        gathered = o[np.searchsorted(read, np.maximum(refs, 0))] * valid[..., None]  # [C, R, d]
        ref_mean = gathered.sum(1) / np.maximum(valid.sum(1), 1).astype(np.float32)[:, None]
        tp = b["target_player"][0]
        player_vec = np.where((tp > 0)[:, None], seats[np.maximum(tp, 1) - 1], self.no_player)
        (wf, bf), (w2, b2), (wv0, bv0), (wv2, bv2) = self.flag_proj, self.score2, self.value0, self.value2
        cand = self.kinds[b["kinds"][0]] + (b["flags"][0] @ wf + bf) + ref_mean + player_vec
        hidden = np.maximum(cand @ self.score_candidate + (g @ self.score_global + self.score_b), 0)
        logits = np.where(b["candidate_mask"][0], (hidden @ w2 + b2)[:, 0], -np.inf)
        value = np.tanh((np.maximum(g @ wv0 + bv0, 0) @ wv2 + bv2)[0])
        return logits, float(value)
