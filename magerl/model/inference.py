"""PolicyNet's forward pass for one decision, in numpy.

A worker asks the network one decision at a time on one CPU core. At that size PyTorch
spends its time dispatching ~100 small operations, not computing: the same arithmetic
written against numpy takes a fraction of the time (`bench/decision_latency.py`).
It holds a copy of the weights (weight matrices stored transposed, which halves the time
of each product), taken when an agent is made: an agent plays its game with the weights,
and the version, it started with. `tests/test_model.py` holds this to the torch forward.

The heads read only the global token, the two seats and the objects a candidate refers
to, so the last block runs its queries, output projection and feed-forward for those rows
alone (keys and values still come from every token): the same numbers in 0.89–0.94 of
the time at the shipped width, measured against the full block on recorded decisions.
"""

from __future__ import annotations

import numpy as np

from magerl.model.network import PolicyNet


_TOP_ROWS = np.arange(3)  # the global token and the two seats, ahead of the objects


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    scale = np.float32(1 / x.shape[-1])  # ndarray.mean() costs more than the sum in its Python wrapper
    centred = x - np.add.reduce(x, -1, keepdims=True) * scale
    centred *= 1 / np.sqrt(np.add.reduce(centred * centred, -1, keepdims=True) * scale + eps)
    centred *= weight
    centred += bias
    return centred


def _linear(x: np.ndarray, p: dict[str, np.ndarray], name: str) -> np.ndarray:
    return x @ p[f"{name}.weight_t"] + p[f"{name}.bias"]


class NumpyPolicy:
    """`PolicyNet` evaluated on a batch of one: `(logits [C], value)` from `encoding.single`'s arrays."""

    def __init__(self, model: PolicyNet) -> None:
        self.config = model.config
        self.p: dict[str, np.ndarray] = {}
        for name, tensor in model.state_dict().items():
            array = tensor.detach().cpu().numpy()
            if name.endswith(".weight") and array.ndim == 2 and "embedding" not in name:
                self.p[f"{name}_t"] = np.ascontiguousarray(array.T)
            else:
                self.p[name] = array.copy()
        d = self.config.d_model  # the score head's input is [candidate, global]: two products, no concatenation
        self.p["score.0.candidate_t"] = np.ascontiguousarray(self.p["score.0.weight_t"][:d])
        self.p["score.0.global_t"] = np.ascontiguousarray(self.p.pop("score.0.weight_t")[d:])

    def __call__(self, b: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
        p, heads = self.p, self.config.heads
        objects = _linear(b["objects"][0], p, "object_proj") + p["name_embedding.weight"][b["names"][0]]
        players = _linear(b["players"][0], p, "player_proj")
        glob = _linear(b["glob"], p, "global_proj")
        h = np.concatenate([glob, players, objects]).astype(np.float32, copy=False)  # [T, d]
        masked = np.concatenate([np.zeros(3, bool), ~b["object_mask"][0]])
        masking = bool(masked.any())  # only a board without objects has padding in a batch of one
        t, d = h.shape
        scale = np.float32(1 / np.sqrt(d // heads))
        refs = b["refs"][0]  # [C, R], -1 where a candidate refers to fewer objects
        read = np.unique(np.maximum(refs, 0))  # the objects the heads read (object 0 stands in for "none")
        rows = np.concatenate([_TOP_ROWS, read + 3])
        for i in range(self.config.layers):
            k = f"blocks.{i}"
            qkv = _linear(_layer_norm(h, p[f"{k}.norm1.weight"], p[f"{k}.norm1.bias"]), p, f"{k}.qkv")
            q, key, v = qkv.reshape(t, 3, heads, d // heads).transpose(1, 2, 0, 3)  # each [heads, T, dh]
            if i == self.config.layers - 1:  # past here only `rows` are read
                q, h = q[:, rows], h[rows]
            scores = (q * scale) @ key.transpose(0, 2, 1)
            if masking:
                scores[:, :, masked] = -np.inf
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            attention = (scores / scores.sum(-1, keepdims=True)) @ v  # [heads, rows, dh]
            h = h + _linear(attention.transpose(1, 0, 2).reshape(len(h), d), p, f"{k}.out")
            hidden = np.maximum(_linear(_layer_norm(h, p[f"{k}.norm2.weight"], p[f"{k}.norm2.bias"]),
                                        p, f"{k}.ff.0"), 0)
            h = h + _linear(hidden, p, f"{k}.ff.2")
        h = _layer_norm(h, p["norm.weight"], p["norm.bias"])
        g, seats, o = h[0], h[1:3], h[3:]  # o: the objects in `read`, in its order

        valid = refs >= 0
        gathered = o[np.searchsorted(read, np.maximum(refs, 0))] * valid[..., None]  # [C, R, d]
        ref_mean = gathered.sum(1) / np.maximum(valid.sum(1), 1).astype(np.float32)[:, None]
        tp = b["target_player"][0]
        player_vec = np.where((tp > 0)[:, None], seats[np.maximum(tp, 1) - 1], p["no_player"])
        cand = (p["kind_embedding.weight"][b["kinds"][0]] + _linear(b["flags"][0], p, "flag_proj")
                + ref_mean + player_vec)
        hidden = np.maximum(cand @ p["score.0.candidate_t"] + (g @ p["score.0.global_t"] + p["score.0.bias"]), 0)
        logits = _linear(hidden, p, "score.2")[:, 0]
        logits = np.where(b["candidate_mask"][0], logits, -np.inf)
        value = np.tanh(_linear(np.maximum(_linear(g, p, "value.0"), 0), p, "value.2")[0])
        return logits, float(value)

