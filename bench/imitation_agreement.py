"""Agreement with the teacher, by prompt and by the teacher's kind of move, policies side by side.

Scores each checkpoint's likeliest candidate against the teacher's choice in recorded
teacher games (`magerl imitate record`), on the games `magerl imitate fit` holds out
(the same split for the same files, --holdout and --seed), so a policy fitted on these
files is scored on games it never saw and every policy on the same decisions. It shows
where a clone disagrees with its teacher, which a single agreement figure hides. Two
floors stand beside the policies: a uniformly random legal move (its expected agreement,
1/candidates) and always the first candidate (pass, no attack, no block).

    python bench/imitation_agreement.py --data teacher.bin --checkpoint default --checkpoint bc-new
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from magerl.learner.checkpoint import load_policy
from magerl.learner.imitation import holdout_split, read_episodes
from magerl.learner.ppo import make_batch, slice_rows
from magerl.model.encoding import ACTION_KINDS, PHASES, PROMPTS
from magerl.model.network import to_tensors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", action="append", required=True, metavar="FILE")
    parser.add_argument("--checkpoint", action="append", required=True, metavar="PATH")
    parser.add_argument("--holdout", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    episodes = [e for name in args.data for e in read_episodes(Path(name))]
    held, _ = holdout_split(np.random.default_rng(args.seed), len(episodes), args.holdout)
    batch = make_batch([episodes[i] for i in held])
    counts = batch.inputs["candidate_counts"]
    first = np.cumsum(counts) - counts
    prompt_at = 2 + len(PHASES)  # encoding's global row: turn, phases (+ other), then prompts (+ other)
    groups = {
        "prompt": np.array(PROMPTS + ("other",))[batch.inputs["glob"][:, prompt_at:prompt_at + len(PROMPTS) + 1].argmax(1)],
        "teacher's move": np.array(("other",) + ACTION_KINDS)[batch.inputs["kinds"][first + batch.actions]],
    }
    hits = {"random move": 1.0 / counts, "first candidate": (batch.actions == 0).astype(float)}
    for spec in args.checkpoint:
        model, _ = load_policy(spec)
        model.eval()
        picks = np.empty(len(batch), np.int64)
        with torch.inference_mode():
            for start in range(0, len(batch), 1024):
                index = np.arange(start, min(start + 1024, len(batch)))
                picks[index] = model(to_tensors(slice_rows(batch, index)))[0].argmax(-1).numpy()
        hits[spec] = picks == batch.actions
    print(f"{len(held)} held-out episodes, {len(batch)} decisions; agreement with the teacher:")
    names = [Path(s).parent.name if Path(s).name.startswith("ckpt-") else Path(s).name or s for s in hits]
    header = "".join(f" {name[-15:]:>15}" for name in names)
    for title, labels in groups.items():
        print(f"\n{'by ' + title:28}{'decisions':>10}{header}")
        for label in sorted(set(labels), key=lambda x: -(labels == x).sum()):
            chosen = labels == label
            print(f"  {label:26}{int(chosen.sum()):>10}" + "".join(f"{h[chosen].mean():>16.1%}" for h in hits.values()))
    print(f"\n{'all':28}{len(batch):>10}" + "".join(f"{h.mean():>16.1%}" for h in hits.values()))


if __name__ == "__main__":
    main()
