"""The optimal batch size: the largest batch that fits the memory budget, measured.

Memory per sample is measured, not guessed: one training step at two batch sizes, the
difference in peak memory divided by the difference in samples. On CUDA the peak is the
allocator's; on CPU it is the bytes autograd saves for the backward pass (activations
dominate a step's memory growth with batch size). The budget is a headroom fraction of
the GPU's free memory, or a fraction of available RAM on CPU. The result is capped by
MAX_SAMPLES_PER_BATCH and, on CUDA, verified by a real step at that size: any failure
(out of memory, or a kernel that fails at huge batches, as the fused attention kernel
did at 65536 on an H200) halves the candidate until a step succeeds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import psutil
import torch

from magerl.learner.ppo import PPOConfig, loss_terms, make_batch, slice_rows
from magerl.model.network import PolicyNet, to_tensors
from magerl.model.synthetic import synthetic_episode

MAX_SAMPLES_ENV = "MAX_SAMPLES_PER_BATCH"


@dataclass(frozen=True)
class BatchPlan:
    optimal: int
    bytes_per_sample: float
    fixed_bytes: float
    budget_bytes: float
    device: str


def max_samples_per_batch(default: int) -> int:
    raw = os.environ.get(MAX_SAMPLES_ENV)
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{MAX_SAMPLES_ENV}={raw!r} must be a positive integer")
    return int(raw)


def _step_bytes(model: PolicyNet, samples: int, device: torch.device) -> float:
    """Peak memory of one forward+backward at `samples` (CUDA: allocator; CPU: saved tensors)."""
    rng = np.random.default_rng(0)
    batch = make_batch([synthetic_episode(rng, steps=samples)])
    inputs = to_tensors(slice_rows(batch, np.arange(samples)), device)
    args = [torch.from_numpy(a).to(device) for a in (batch.actions.astype(np.int64), batch.logp, batch.returns, batch.advantages)]
    model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, _ = loss_terms(model, inputs, *args, PPOConfig())
        loss.backward()
        torch.cuda.synchronize(device)
        peak = float(torch.cuda.max_memory_allocated(device))
    else:
        saved = [0]

        def pack(t: torch.Tensor) -> torch.Tensor:
            saved[0] += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss, _ = loss_terms(model, inputs, *args, PPOConfig())
        loss.backward()
        peak = float(saved[0] + sum(t.numel() * t.element_size() for t in inputs.values()))
    model.zero_grad(set_to_none=True)
    return peak


def plan_batch_size(model: PolicyNet, device: torch.device, cap: int, *, headroom: float = 0.8,
                    ram_fraction: float = 0.25, probe: tuple[int, int] = (32, 128)) -> BatchPlan:
    small, large = probe
    m_small, m_large = _step_bytes(model, small, device), _step_bytes(model, large, device)
    per_sample = max((m_large - m_small) / (large - small), 1.0)
    fixed = max(m_small - per_sample * small, 0.0)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        budget = headroom * (free + torch.cuda.memory_allocated(device))
    else:
        budget = ram_fraction * psutil.virtual_memory().available
    optimal = int(max(1, min(cap, (budget - fixed) // per_sample)))
    if device.type == "cuda":
        while optimal > 1:
            try:
                _step_bytes(model, optimal, device)
                break
            except (torch.cuda.OutOfMemoryError, RuntimeError):
                torch.cuda.empty_cache()
                optimal //= 2
    return BatchPlan(optimal, per_sample, fixed, budget, str(device))
