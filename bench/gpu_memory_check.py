"""GPU path check (device machine only): NVML's reading vs torch.cuda.mem_get_info.

Allocates a block on each GPU so "used" is non-trivial, reads memory through magerl's
NVML reader and through torch, and prints both with their relative difference
(goal: within 1%). Exits 1 when no GPU is visible.

    python bench/gpu_memory_check.py [--gib 8]
"""

from __future__ import annotations

import argparse
import sys

import torch

from magerl.telemetry.collectors import nvml_reader


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=8.0, help="GiB to allocate on each GPU first")
    args = parser.parse_args()
    read = nvml_reader()
    if read is None or not torch.cuda.is_available():
        print("no GPU visible to NVML and torch")
        return 1
    blocks = [torch.empty(int(args.gib * 2**30), dtype=torch.uint8, device=f"cuda:{i}") for i in range(torch.cuda.device_count())]
    torch.cuda.synchronize()
    worst = 0.0
    for index, used, total in read():
        free_t, total_t = torch.cuda.mem_get_info(index)
        used_t = total_t - free_t
        d_used, d_total = abs(used - used_t) / max(used_t, 1), abs(total - total_t) / total_t
        worst = max(worst, d_used, d_total)
        print(f"gpu {index}: NVML used {used / 2**30:.3f} GiB total {total / 2**30:.3f} GiB | "
              f"torch used {used_t / 2**30:.3f} GiB total {total_t / 2**30:.3f} GiB | "
              f"diff used {d_used:.3%} total {d_total:.3%}")
    del blocks
    print(f"largest relative difference: {worst:.3%}   goal <= 1%: {'met' if worst <= 0.01 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
