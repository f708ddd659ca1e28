"""Peak memory and time per iteration of the engine on a synthetic volume of a given size.

    python -m benchmarks.memory_probe --size 256 256 160 --iterations 3 --preset fast

Prints one table row; the volume is smooth noise and a shifted copy, so only size matters, not content.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from typing import List, Optional

import numpy as np
import SimpleITK as sitk

from ODERegistrationLib.engine import register_images
from ODERegistrationLib.engine.presets import load_preset, preset_files


def synthetic_pair(size: List[int]) -> tuple:
    noise = sitk.GetImageFromArray(np.random.default_rng(0).random(size[::-1], dtype=np.float32))
    fixed = sitk.SmoothingRecursiveGaussian(noise, 4.0)
    moving = sitk.Resample(fixed, fixed, sitk.TranslationTransform(3, (2.0, -1.5, 1.0)), sitk.sitkLinear, 0.0)
    return fixed, moving


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory_probe", description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=3, default=[256, 256, 160], help="x y z voxels")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--preset", choices=sorted(preset_files()), default="fast")
    parser.add_argument("--mode", default="3d")
    arguments = parser.parse_args(argv)
    fixed, moving = synthetic_pair(arguments.size)
    parameters = load_preset(arguments.preset).replace(iterations=arguments.iterations, iterations_3d=arguments.iterations,
                                                   mode=arguments.mode, device="cpu", convergence_tolerance=0.0)
    reports = []
    start = time.perf_counter()
    register_images(fixed, moving, parameters, progress=reports.append)
    total = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0 ** 2
    print("| size | preset | iterations | s per iteration (optimizer) | total s (with outputs) | peak RSS GB |")
    print("|---|---|---|---|---|---|")
    print(f"| {' x '.join(map(str, arguments.size))} | {arguments.preset} | {arguments.iterations} "
          f"| {reports[-1].elapsed_seconds / arguments.iterations:.2f} | {total:.1f} | {peak_gb:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
