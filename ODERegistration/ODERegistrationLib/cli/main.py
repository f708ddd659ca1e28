"""``oderegistration register`` and ``oderegistration demo``.

Errors in the inputs print one line naming the file and the problem, and exit with status 2.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import List, Optional

from ..engine import DeviceError, InputError, RegistrationCancelled, RegistrationParameters, register_images
from ..engine.io import check_output_dir, read_image, write_result
from ..engine.optimizer import RegistrationDiverged
from ..engine.region import box_corners
from ..engine.parameters import DEVICES, MODES, PRESETS, REGIONS, SIMILARITIES
from ..engine.qa import save_qa_figure
from ..sample_data import sample_pair
from .progress_bar import ProgressBar

EXIT_INPUT_ERROR = 2
TUNABLE = {"iterations": int, "iterations_3d": int, "levels": int, "learning_rate": float, "regularization_lambda": float,
           "smoothing_sigma_mm": float, "net_downsampling": int, "working_spacing_mm": float,
           "folding_weight": float, "region_margin_mm": float, "seed": int}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oderegistration",
                                     description="Training-free diffeomorphic multi-resolution ODE registration.")
    commands = parser.add_subparsers(dest="command", required=True)
    register = commands.add_parser("register", help="register a moving image onto a fixed image")
    register.add_argument("--fixed", required=True, help="fixed (reference) image, any format SimpleITK reads")
    register.add_argument("--moving", required=True, help="moving image, warped onto the fixed image")
    register.add_argument("--moving-labels", help="label map on the moving image, propagated onto the fixed image")
    register.add_argument("--fixed-labels", help="label map on the fixed image, to score Dice and Hausdorff")
    register.add_argument("--fixed-mask", help="label map on the fixed image: the similarity counts only its nonzero voxels")
    register.add_argument("--moving-mask", help="label map on the moving image: likewise, in the moving image")
    register.add_argument("--output-dir", required=True, help="folder for the outputs")
    add_region_option(register)
    add_parameter_options(register)
    register.add_argument("--quiet", action="store_true", help="no progress bar (the summary is still printed)")
    demo = commands.add_parser("demo", help="register the built-in Sunnybrook sample pair")
    demo.add_argument("--output-dir", default="oderegistration_demo", help="folder for the outputs")
    add_region_option(demo)
    add_parameter_options(demo)
    demo.add_argument("--quiet", action="store_true", help="no progress bar (the summary is still printed)")
    return parser


def add_region_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--roi", type=_region_choice, metavar="auto|whole|BOX",
                        help="where to fit the map: auto (the fast preset's default: around the moving labels, else "
                             "the fixed mask, else the whole image), whole, or a box 'x0,y0[,z0],x1,y1[,z1]' of two "
                             "opposite corners in physical LPS mm; outside it the map fades smoothly to the identity")


def add_parameter_options(parser: argparse.ArgumentParser) -> None:
    """Options default to the chosen preset's values; any option given on the command line overrides it."""
    parser.add_argument("--preset", choices=sorted(PRESETS), default="fast",
                        help="fast (default, measured in docs/benchmarks.md) or paper (the published settings)")
    helps = {"iterations": "most iterations, 2-D images and stacks", "iterations_3d": "most iterations, volumes",
             "regularization_lambda": "displacement penalty; gamma = lambda / K",
             "smoothing_sigma_mm": "Gaussian LowPass of the velocity, in mm, on the net grid",
             "region_margin_mm": "margin around the moving labels of the automatic region, in mm",
             "net_downsampling": "net grid this many times coarser than each level (paper: 1)",
             "working_spacing_mm": "finest level = the image halved while its spacing stays at most this, in mm "
                                   "(paper: 0, full resolution)",
             "folding_weight": "weight of the folding guard on det J < 0.1 (paper: 0)"}
    flags = {"regularization_lambda": "--lambda", "region_margin_mm": "--roi-margin-mm"}
    for name, kind in TUNABLE.items():
        flag = flags.get(name, "--" + name.replace("_", "-"))
        parser.add_argument(flag, dest=name, type=kind, help=helps.get(name))
    parser.add_argument("--similarity", choices=SIMILARITIES)
    parser.add_argument("--mode", choices=MODES, help="auto picks slices for thick-slice stacks")
    parser.add_argument("--device", choices=DEVICES)


def _region_choice(text: str):
    """``auto``, ``whole`` or a box: two opposite corners, all coordinates of the first corner first."""
    if text in REGIONS:
        return text
    try:
        numbers = [float(value) for value in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not auto, whole or a box of 4 or 6 numbers") from None
    if len(numbers) not in (4, 6):
        raise argparse.ArgumentTypeError(f"a box needs 4 (2-D) or 6 (3-D) numbers, not {len(numbers)}")
    return numbers[:len(numbers) // 2], numbers[len(numbers) // 2:]


def parameters_from_arguments(arguments: argparse.Namespace) -> RegistrationParameters:
    """The preset, with the options the user gave."""
    given = {name: getattr(arguments, name) for name in [*TUNABLE, "similarity", "mode", "device"]
             if getattr(arguments, name) is not None}
    if isinstance(arguments.roi, str):
        given["region"] = arguments.roi
    return PRESETS[arguments.preset].replace(**given)


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        parameters = parameters_from_arguments(arguments)
    except ValueError as error:
        parser.error(str(error))
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # like Ctrl-C: the staging folder is removed on the way out
    inputs = _input_paths(arguments)
    corners = box_corners(*arguments.roi) if isinstance(arguments.roi, tuple) else None
    try:
        return _run(inputs, arguments.output_dir, parameters, arguments.quiet, corners)
    except (InputError, DeviceError, RegistrationDiverged) as error:
        print(f"oderegistration: error: {error}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except (KeyboardInterrupt, RegistrationCancelled):
        print("oderegistration: cancelled; nothing was written", file=sys.stderr)
        return 130


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _input_paths(arguments: argparse.Namespace) -> dict:
    if arguments.command == "demo":
        return sample_pair()
    paths = {"fixed": arguments.fixed, "moving": arguments.moving}
    for key in ("fixed_labels", "moving_labels", "fixed_mask", "moving_mask"):
        if getattr(arguments, key):
            paths[key] = getattr(arguments, key)
    return paths


def _run(inputs: dict, output_path: str, parameters: RegistrationParameters, quiet: bool,
         region_corners=None) -> int:
    output_dir = check_output_dir(output_path)
    names = {key: f"{key.replace('_', ' ')} {path}" for key, path in inputs.items()}
    names["region_corners"] = "--roi box"
    images = {key: read_image(path, key.replace("_", " ")) for key, path in inputs.items()}
    with ProgressBar(disabled=quiet) as bar:
        result = register_images(images["fixed"], images["moving"], parameters,
                                 moving_labels=images.get("moving_labels"), fixed_labels=images.get("fixed_labels"),
                                 progress=bar.update, names=names, fixed_mask=images.get("fixed_mask"),
                                 moving_mask=images.get("moving_mask"), region_corners=region_corners)
    write_result(result, output_dir,
                 lambda folder: save_qa_figure(images["fixed"], images["moving"], result, folder / "qa.png"))
    report = result.report
    for warning in report["warnings"]:
        print(f"oderegistration: warning: {warning}", file=sys.stderr)
    region = report["region"]
    print(f"region: {region['source']}" + ("" if region["source"] == "whole image" else
          f" (+{region['margin_mm']:g} mm), voxels {region['index_start']} size {region['index_size']}; outside it "
          f"the map fades to the identity over {region['fade_mm']:g} mm (--roi whole registers the whole image)"))
    print(f"{output_dir}: {report['seconds']:.1f} s on {report['device']}, {report['folded_voxels']} folded voxels "
          f"({report['inverse_folded_voxels']} in the inverse), min det J {report['min_jacobian']:.3f}, "
          f"inverse consistency {report['inverse_consistency_mm']:.3f} mm")
    for label, scores in report.get("labels", {}).items():
        print(f"  label {label}: Dice {scores['before']['dice']:.3f} -> {scores['after']['dice']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
