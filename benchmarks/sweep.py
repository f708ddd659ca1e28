"""Compare engine settings on the development 2-D pairs, in one process: mean Dice, median time, iterations.

    python -m benchmarks.sweep --data ../shared/data "" "--net-downsampling 2 --iterations 250" "--roi-as-mask"

Each argument is one setting, written as options of ``oderegistration register``; ``--roi-as-mask`` fits the whole
image with the automatic region as a fixed mask instead of cropping to it (the design question of issue 9). The
pairs are ACDC's five and Sunnybrook's first four (``--sunnybrook-pairs``), with their moving labels, so the
automatic region applies. For choosing defaults; the tables in docs/benchmarks.md come from run_benchmark.
"""
from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import SimpleITK as sitk

from ODERegistrationLib.cli.main import build_parser, parameters_from_arguments
from ODERegistrationLib.engine import register_images
from ODERegistrationLib.engine.pipeline.region import region_around_mask

from .dataset import load_pairs

AS_MASK = "--roi-as-mask"


def run_setting(setting: str, pairs) -> str:
    words = shlex.split(setting)
    as_mask = AS_MASK in words
    arguments = build_parser().parse_args(["demo"] + [word for word in words if word != AS_MASK])
    parameters = parameters_from_arguments(arguments)
    if as_mask:
        parameters = parameters.replace(region="whole")
    dice = {"acdc": [], "sunnybrook": []}
    seconds, iterations = [], []
    for pair, images in pairs:
        options = {"moving_labels": images["moving_labels"], "fixed_labels": images["fixed_labels"]}
        if as_mask:
            options["fixed_mask"] = _box_mask(images, parameters.region_margin_mm)
        start = time.perf_counter()
        report = register_images(images["fixed"], images["moving"], parameters, **options).report
        seconds.append(time.perf_counter() - start)
        iterations.append(report["iterations"])
        dice["acdc" if pair.id.startswith("acdc") else "sunnybrook"] += [
            report["labels"][str(label)]["after"]["dice"] for label in pair.eval_labels]
    return (f"| `{setting or 'defaults'}` | {np.mean(dice['acdc']):.3f} | {np.mean(dice['sunnybrook']):.3f} | "
            f"{statistics.median(seconds):.2f} | {statistics.median(iterations):.0f} |")


def _box_mask(images: dict, margin_mm: float) -> sitk.Image:
    region = region_around_mask(images["moving_labels"], images["fixed"], margin_mm, "moving labels")
    mask = np.zeros(sitk.GetArrayViewFromImage(images["fixed"]).shape, np.uint8)
    mask[region.slices] = 1
    image = sitk.GetImageFromArray(mask)
    image.CopyInformation(images["fixed"])
    return image


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the folder holding acdc/ and sunnybrook/")
    parser.add_argument("--sunnybrook-pairs", type=int, default=4)
    parser.add_argument("settings", nargs="+", help="one quoted string of register options per setting")
    arguments = parser.parse_args(argv)
    pairs = (load_pairs(arguments.data / "acdc", 2)
             + load_pairs(arguments.data / "sunnybrook", 2, arguments.sunnybrook_pairs))
    loaded = [(pair, {key: pair.image(key) for key in ("fixed", "moving", "fixed_labels", "moving_labels")})
              for pair in pairs]
    print("| setting | ACDC 2-D mean Dice | Sunnybrook 2-D mean Dice | median s | median iterations |")
    print("|---|---|---|---|---|")
    for setting in arguments.settings:
        print(run_setting(setting, loaded), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
