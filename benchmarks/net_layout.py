"""Time of one forward + backward pass of the velocity net, in the default layout and in the CPU's (channels-last).

    python -m benchmarks.net_layout

Prints a table; the net grids are those of the benchmark's cases (an ACDC 2-D region, a stack's and the cine's
slice batches, volumes). The nets keep their initial weights and the inputs are noise: the cost depends only on the
sizes.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

import torch

from ODERegistrationLib.engine.core.device import net_memory_format
from ODERegistrationLib.engine.core.network import VelocityNet

CASES = (  # (what, dim, independent nets in the batch, net grid, kernel)
    ("ACDC 2-D region, finest level", 2, 1, (48, 46), 5),
    ("ACDC stack region, 10 slices", 2, 10, (48, 46), 5),
    ("cine, 171 slices (net grid /4)", 2, 171, (24, 24), 5),
    ("whole-FOV volume region", 3, 1, (32, 58, 64), 3),
    ("cine through-plane maps, 19 stacks", 3, 19, (12, 24, 24), 3),
    ("volume 64^3", 3, 1, (64, 64, 64), 3),
)


def milliseconds_per_pass(net: VelocityNet, grids: torch.Tensor, displacement: torch.Tensor, repeats: int) -> float:
    for _ in range(2):  # oneDNN picks its kernels on the first calls
        net(grids, displacement).sum().backward()
    start = time.perf_counter()
    for _ in range(repeats):
        net(grids, displacement).sum().backward()
    return 1000.0 * (time.perf_counter() - start) / repeats


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.net_layout", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    arguments = parser.parse_args(argv)
    print("| net grid | default layout ms | CPU layout (channels-last) ms | speed-up |")
    print("|---|---|---|---|")
    for what, dim, fields, shape, kernel in CASES:
        torch.manual_seed(0)
        grids = torch.randn(2, dim, *shape)
        displacement = torch.randn(2 * fields, dim, *shape, requires_grad=True)
        default = VelocityNet(dim, fields, kernel_size=kernel)
        channels_last = VelocityNet(dim, fields, kernel_size=kernel).to(
            memory_format=net_memory_format(torch.device("cpu"), dim))
        times = [milliseconds_per_pass(net, grids, displacement, arguments.repeats) for net in (default, channels_last)]
        print(f"| {what}: {fields} x {' x '.join(map(str, shape))} | {times[0]:.1f} | {times[1]:.1f} | "
              f"{times[0] / times[1]:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
