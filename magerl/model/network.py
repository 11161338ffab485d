"""The policy/value network: entity transformer + pointer scoring of candidate actions.

Tokens: one global (turn, phase, prompt), two players (acting seat first), one per
visible object (card name embedding + features). A transformer encoder mixes them; each
candidate is scored from its kind, its flags, the encoded tokens of the objects and
player it refers to, and the global token; softmax over the legal candidates. The value
head reads the global token (expected result in -1..1 for the acting seat).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from magerl.model.encoding import F_CANDIDATE, F_GLOBAL, F_OBJECT, F_PLAYER, N_KINDS, NAME_BUCKETS


@dataclass(frozen=True)
class ModelConfig:
    d_model: int = 64
    layers: int = 2
    heads: int = 4

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Block(nn.Module):
    """Pre-norm transformer block. Written out rather than nn.TransformerEncoderLayer, whose
    per-call Python checks cost more than the arithmetic at the batch of one workers run."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d))

    def forward(self, x: torch.Tensor, attend: torch.Tensor) -> torch.Tensor:
        """`attend` [B, 1, 1, T]: True where a token may be attended to."""
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
        x = x + self.out(a.transpose(1, 2).reshape(b, t, d))
        return x + self.ff(self.norm2(x))


class PolicyNet(nn.Module):
    def __init__(self, config: ModelConfig = ModelConfig()) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.name_embedding = nn.Embedding(NAME_BUCKETS, d, padding_idx=0)
        self.object_proj = nn.Linear(F_OBJECT, d)
        self.player_proj = nn.Linear(F_PLAYER, d)
        self.global_proj = nn.Linear(F_GLOBAL, d)
        self.blocks = nn.ModuleList(Block(d, config.heads) for _ in range(config.layers))
        self.norm = nn.LayerNorm(d)
        self.kind_embedding = nn.Embedding(N_KINDS, d)
        self.flag_proj = nn.Linear(F_CANDIDATE, d)
        self.no_player = nn.Parameter(torch.zeros(d))
        self.score = nn.Sequential(nn.Linear(2 * d, d), nn.ReLU(), nn.Linear(d, 1))
        self.value = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 1))

    def forward(self, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [B, C] (-inf where no candidate) and values [B]."""
        objects = self.object_proj(b["objects"]) + self.name_embedding(b["names"])
        players = self.player_proj(b["players"])
        glob = self.global_proj(b["glob"]).unsqueeze(1)
        tokens = torch.cat([glob, players, objects], dim=1)
        fixed = torch.ones(tokens.shape[0], 3, dtype=torch.bool, device=tokens.device)  # global + 2 players
        attend = torch.cat([fixed, b["object_mask"]], dim=1)[:, None, None, :]
        h = tokens
        for block in self.blocks:
            h = block(h, attend)
        h = self.norm(h)
        g, p, o = h[:, 0], h[:, 1:3], h[:, 3:]

        refs = b["refs"]  # [B, C, R]
        valid = (refs >= 0).unsqueeze(-1).to(h.dtype)
        # Index the flattened objects rather than gather() from an expanded view, whose backward
        # materialises a [B, C, T, d] gradient (the learner's main cost before this).
        offsets = torch.arange(o.shape[0], device=o.device).view(-1, 1, 1) * o.shape[1]
        gathered = o.reshape(-1, o.shape[-1])[refs.clamp(min=0) + offsets]  # [B, C, R, d]
        ref_mean = (gathered * valid).sum(2) / valid.sum(2).clamp(min=1)
        tp = b["target_player"]  # 0 none, 1 acting seat, 2 opponent
        player_vec = torch.gather(p, 1, (tp.clamp(min=1) - 1).unsqueeze(-1).expand(-1, -1, p.shape[-1]))
        player_vec = torch.where((tp > 0).unsqueeze(-1), player_vec, self.no_player)
        cand = self.kind_embedding(b["kinds"]) + self.flag_proj(b["flags"]) + ref_mean + player_vec
        logits = self.score(torch.cat([cand, g.unsqueeze(1).expand_as(cand)], dim=-1)).squeeze(-1)
        logits = logits.masked_fill(~b["candidate_mask"], float("-inf"))
        value = torch.tanh(self.value(g).squeeze(-1))
        return logits, value


def to_tensors(batch: dict[str, np.ndarray], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    out = {}
    for key, array in batch.items():
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if tensor.dtype == torch.int32:
            tensor = tensor.long()
        out[key] = tensor.to(device, non_blocking=True)
    return out


def widen_inputs(model: PolicyNet, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`tensors` with an object projection saved narrower than `model`'s padded with zero columns.

    Object rows only ever gain features at their end (encoding.F_OBJECT), so a checkpoint
    saved before one was added reads it with zero weight and computes exactly what it
    computed before. Other rows make no such promise (a new prompt shifts the global
    row), so a change there still fails to load rather than loading misaligned.
    """
    name = "object_proj.weight"
    saved, wanted = tensors.get(name), model.state_dict()[name]
    if saved is None or saved.shape[0] != wanted.shape[0] or saved.shape[1] >= wanted.shape[1]:
        return tensors
    return {**tensors, name: torch.cat([saved, saved.new_zeros(saved.shape[0], wanted.shape[1] - saved.shape[1])], 1)}
