"""Synthetic episodes of realistic shape, for batch-size planning, benchmarks and tests."""

from __future__ import annotations

import numpy as np

from magerl.model.encoding import F_CANDIDATE, F_GLOBAL, F_OBJECT, F_PLAYER, MAX_REFS, N_KINDS, NAME_BUCKETS
from magerl.transport.episodes import Episode


def synthetic_episode(rng: np.random.Generator, steps: int = 100, objects: int = 32, candidates: int = 12,
                      version: int = 0) -> Episode:
    """An episode whose decisions see `objects` objects and `candidates` candidates each."""
    oc = np.full(steps, objects, np.int32)
    cc = np.full(steps, candidates, np.int32)
    n_obj, n_cand = int(oc.sum()), int(cc.sum())
    arrays = {
        "object_counts": oc,
        "candidate_counts": cc,
        "players": rng.random((steps, 2, F_PLAYER), np.float32),
        "glob": rng.random((steps, F_GLOBAL), np.float32),
        "objects": rng.random((n_obj, F_OBJECT), np.float32),
        "names": rng.integers(0, NAME_BUCKETS, n_obj, dtype=np.int32),
        "kinds": rng.integers(0, N_KINDS, n_cand, dtype=np.int32),
        "refs": rng.integers(-1, objects, (n_cand, MAX_REFS), dtype=np.int32),
        "target_player": rng.integers(0, 3, n_cand, dtype=np.int32),
        "flags": rng.random((n_cand, F_CANDIDATE), np.float32),
        "actions": rng.integers(0, candidates, steps, dtype=np.int32),
        "logp": np.full(steps, -np.log(candidates), np.float32),
        "values": np.zeros(steps, np.float32),
        "versions": np.full(steps, version, np.int32),
    }
    reward = float(rng.choice([-1.0, 1.0]))
    arrays["evaluations"] = rng.normal(0.0, 20.0, steps).astype(np.float32)  # the engine's, as a runner sends it
    return Episode(arrays, reward, {"runner": 0, "opponent": "synthetic"})
