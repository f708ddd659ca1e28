"""``oderegistration register``, ``oderegistration sequence`` and ``oderegistration demo``.

Errors in the inputs print one line naming the file and the problem, and exit with status 2.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Dict, List, Optional

from ..engine import (DeviceError, InputError, RegistrationCancelled, RegistrationParameters, __version__,
                      register_images)
from ..engine.core.device import is_out_of_memory
from ..engine.pipeline.inputs import read_image, read_label_map, segment_names
from ..engine.pipeline.outputs import (check_output_dir, is_pair_output, is_sequence_output,
                                       refuse_another_commands_outputs, refuse_inputs_among_outputs, write_result,
                                       write_sequence)
from ..engine.core.optimizer import RegistrationDiverged
from ..engine.parameters import REGIONS, defaults, field_type, option_flag, specs
from ..engine.presets import DEFAULT_PRESET, SEQUENCE_PRESET, load_preset, preset_files
from ..engine.pipeline.qa import save_qa_figure
from ..engine.pipeline.region import box_corners
from ..engine.pipeline.cardiac_volumes import volumes_in_words
from ..engine.pipeline.cine import expert_phases, read_cine, reference_labels
from ..engine.pipeline.sequence import register_sequence
from ..engine.pipeline.sequence_qa import save_sequence_qa, save_volume_curve
from ..sample_data import sample_pair
from .progress_bar import ProgressBar

EXIT_INPUT_ERROR = 2


class _OneLineErrors(argparse.ArgumentParser):
    """A rejected option is one line, like every other bad input, not argparse's usage block before it."""

    def error(self, message: str):
        self.exit(EXIT_INPUT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrors(prog="oderegistration",
                                     description="Training-free diffeomorphic multi-resolution ODE registration.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    register = commands.add_parser("register", help="register a moving image onto a fixed image")
    register.set_defaults(usage=register)
    register.add_argument("--fixed", required=True,
                          help="fixed (reference) image: any file SimpleITK reads, or a folder of one DICOM series")
    register.add_argument("--moving", required=True, help="moving image, warped onto the fixed image")
    register.add_argument("--moving-labels", help="label map on the moving image, propagated onto the fixed image "
                                                  "(a Slicer .seg.nrrd too: its segments' names are reported)")
    register.add_argument("--fixed-labels", help="label map on the fixed image, to score Dice and Hausdorff")
    register.add_argument("--fixed-mask", help="label map on the fixed image: the similarity counts only its nonzero voxels")
    register.add_argument("--moving-mask", help="label map on the moving image: likewise, in the moving image")
    register.add_argument("--output-dir", required=True, help="folder for the outputs")
    add_region_option(register)
    add_parameter_options(register)
    register.add_argument("--quiet", action="store_true", help="no progress bar (the summary is still printed)")
    sequence = commands.add_parser("sequence", help="carry the labels drawn on one phase of a cine through every "
                                                    "phase, with the volume curve and the ejection fraction")
    sequence.set_defaults(usage=sequence)
    sequence.add_argument("--cine", required=True, help="4-D image (x, y, slice, phase), a 3-D one with --time-axis, "
                                                       "or a folder of one DICOM cine series")
    sequence.add_argument("--time-axis", action="store_true", help="read a 3-D --cine as 2-D + time (x, y, phase)")
    sequence.add_argument("--labels", required=True,
                          help="label map on the reference phase, or a label sequence like the cine (its reference "
                               "phase is taken)")
    sequence.add_argument("--reference-phase", type=int, required=True, help="the phase the labels were drawn on")
    sequence.add_argument("--expert-labels", help="label sequence like the cine, 0 where a frame is not contoured: "
                                                  "Dice / HD95 on every contoured frame and the expert's EF")
    sequence.add_argument("--output-dir", required=True, help="folder for the outputs")
    add_region_option(sequence)
    add_parameter_options(sequence, SEQUENCE_PRESET)
    sequence.add_argument("--quiet", action="store_true", help="no progress bar (the summary is still printed)")
    demo = commands.add_parser("demo", help="register the built-in Sunnybrook sample pair")
    demo.set_defaults(usage=demo)
    demo.add_argument("--output-dir", default="oderegistration_demo", help="folder for the outputs")
    add_region_option(demo)
    add_parameter_options(demo)
    demo.add_argument("--quiet", action="store_true", help="no progress bar (the summary is still printed)")
    return parser


def add_region_option(parser: argparse.ArgumentParser) -> None:
    spec = specs()["region"]
    parser.add_argument(spec.flag, type=_region_choice, metavar="auto|whole|BOX",
                        help=_help(spec, defaults()["region"], "; or a box 'x0,y0[,z0],x1,y1[,z1]' of two opposite "
                                                              "corners in physical LPS mm"))


def add_parameter_options(parser: argparse.ArgumentParser, default_preset: str = DEFAULT_PRESET) -> None:
    """One option per engine parameter (from its Spec); each overrides the preset's value when given."""
    base = parser.add_mutually_exclusive_group()
    base.add_argument("--preset", default=default_preset, metavar="NAME|FILE",
                      help=f"values to start from: {', '.join(preset_files())} (shipped) or a preset "
                           f"file (default: {default_preset})")
    base.add_argument("--parameters", metavar="REPORT",
                      help="start from exactly the parameters of an earlier run's report.json")
    start = load_preset(default_preset).as_dict()
    for name, spec in specs().items():
        if name == "region":
            continue  # --roi, which also takes a box
        kind = {"choices": spec.choices} if spec.choices else {"type": field_type(name), "metavar": "N"}
        parser.add_argument(option_flag(name), dest=name, **kind, help=_help(spec, start[name]))


def _help(spec, default, more: str = "") -> str:
    """The parameter's help with its default and paper values (escaped for argparse's % formatting)."""
    return f"{spec.help}{more} (default: {default:g}; paper: {spec.paper:g})".replace("%", "%%") \
        if not spec.choices else f"{spec.help}{more} (default: {default}; paper: {spec.paper})".replace("%", "%%")


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


def _box_joined_to_its_option(argv: List[str]) -> List[str]:
    """``--roi -40,-60,30,20`` as ``--roi=-40,-60,30,20``: argparse takes a value that starts with a minus sign for
    an option of its own, and a box in LPS millimetres usually starts below zero."""
    flag, joined = specs()["region"].flag, []
    for token in argv:
        if joined and joined[-1] == flag and re.match(r"-[\d.]", token):
            joined[-1] = f"{joined[-1]}={token}"
        else:
            joined.append(token)
    return joined


def parameters_from_arguments(arguments: argparse.Namespace) -> RegistrationParameters:
    """The preset (or an earlier run's parameters), with the options the user gave; ValueError when a value or
    the preset is not acceptable."""
    given = {name: getattr(arguments, name) for name in specs()
             if name != "region" and getattr(arguments, name) is not None}
    if isinstance(arguments.roi, str):
        given["region"] = arguments.roi
    if arguments.parameters is None:
        return load_preset(arguments.preset).replace(**given)
    if not os.path.isfile(arguments.parameters):
        raise ValueError(f"--parameters {arguments.parameters}: no such file (an earlier run's report.json)")
    return load_preset(arguments.parameters, complete=True).replace(**given)


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(_box_joined_to_its_option(sys.argv[1:] if argv is None else argv))
    try:
        parameters = parameters_from_arguments(arguments)
    except ValueError as error:
        arguments.usage.error(str(error))
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # like Ctrl-C: the staging folder is removed on the way out
    corners = box_corners(*arguments.roi) if isinstance(arguments.roi, tuple) else None
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            if arguments.command == "sequence":
                return _run_sequence(arguments, parameters, corners)
            return _run(_input_paths(arguments), arguments.output_dir, parameters, arguments.quiet, corners)
    except (InputError, DeviceError, RegistrationDiverged) as error:
        print(f"oderegistration: error: {error}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except (KeyboardInterrupt, RegistrationCancelled):
        print("oderegistration: cancelled; nothing was written", file=sys.stderr)
        return 130
    except (RuntimeError, MemoryError) as error:  # after the fit too: resampling and Jacobians of a large grid
        if not is_out_of_memory(error):
            raise
        print("oderegistration: error: the machine ran out of memory; nothing was written. Retry with a coarser "
              "working resolution (a larger --working-spacing-mm) or in a smaller region (--roi)", file=sys.stderr)
        return EXIT_INPUT_ERROR


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A Python warning (what ITK's reader said of a header, or a library's) as one line, like the run's own."""
    print(f"oderegistration: warning: {message}", file=sys.stderr)


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
    refuse_another_commands_outputs(output_dir, is_pair_output, is_sequence_output, "sequence")
    refuse_inputs_among_outputs(output_dir, {key.replace("_", " "): path for key, path in inputs.items()},
                                is_pair_output)
    names = {key: f"{key.replace('_', ' ')} {path}" for key, path in inputs.items()}
    names["region_corners"] = "--roi box"
    images = {key: read_image(inputs[key], key) for key in ("fixed", "moving")}
    for key in [key for key in inputs if key not in images]:  # fixed_labels, moving_mask...: maps of their image
        images[key] = read_label_map(inputs[key], key.replace("_", " "), images[key.split("_")[0]],
                                     mask=key.endswith("_mask"))
    with ProgressBar(disabled=quiet) as bar:
        result = register_images(images["fixed"], images["moving"], parameters,
                                 moving_labels=images.get("moving_labels"), fixed_labels=images.get("fixed_labels"),
                                 progress=bar.update, names=names, fixed_mask=images.get("fixed_mask"),
                                 moving_mask=images.get("moving_mask"), region_corners=region_corners)
    if "moving_labels" in inputs:
        _name_labels(result.report.get("labels", {}), inputs["moving_labels"])
    write_result(result, output_dir,
                 lambda folder: save_qa_figure(images["fixed"], images["moving"], result, folder / "qa.png",
                                               images.get("fixed_labels"), images.get("moving_labels")))
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
        print(f"  label {_named(label, scores)}: Dice {scores['before']['dice']:.3f} -> "
              f"{scores['after']['dice']:.3f}")
    return 0


def _run_sequence(arguments: argparse.Namespace, parameters: RegistrationParameters, region_corners=None) -> int:
    output_dir = check_output_dir(arguments.output_dir)
    refuse_another_commands_outputs(output_dir, is_sequence_output, is_pair_output, "register")
    inputs = {"cine": arguments.cine, "labels": arguments.labels, "expert labels": arguments.expert_labels}
    refuse_inputs_among_outputs(output_dir, {name: path for name, path in inputs.items() if path},
                                is_sequence_output)
    cine = read_cine(read_image(arguments.cine, "cine", cine=True), arguments.time_axis, f"cine {arguments.cine}")
    frame = cine.phases[0]
    plane = frame[:, :, 0] if cine.time_axis_in_input == 2 else frame  # a 2-D cine's labels are 2-D images of it
    labels = reference_labels(read_label_map(arguments.labels, "labels", plane), cine, arguments.reference_phase,
                              f"labels {arguments.labels}")
    experts = None
    if arguments.expert_labels:
        experts = expert_phases(read_image(arguments.expert_labels, "expert labels"), cine,
                                f"expert labels {arguments.expert_labels}", labels)
    with ProgressBar(disabled=arguments.quiet) as bar:
        result = register_sequence(cine, labels, arguments.reference_phase, parameters, progress=bar.update,
                                   names={"cine": f"cine {arguments.cine}", "labels": f"labels {arguments.labels}"},
                                   expert_labels=experts, region_corners=region_corners)

    def pictures(folder: Path) -> None:
        save_volume_curve(result, cine, folder / "volume_curve.png")
        save_sequence_qa(result, cine, folder / "qa.png")

    _name_labels(result.report["labels"], arguments.labels)
    write_sequence(result, cine, output_dir, pictures)
    report = result.report
    for warning in report["warnings"]:
        print(f"oderegistration: warning: {warning}", file=sys.stderr)
    print(f"{output_dir}: {report['phases']} phases x {len(report['labelled_slices'])} labelled slices in "
          f"{report['seconds']:.1f} s on {report['batch']['device']}, {report['folded_voxels']} folded voxels")
    cycle = report["cycle"]
    print(f"  ED phase {cycle['ed_phase']}, ES phase {cycle['es_phase']}: the largest and smallest volume of label "
          f"{_named(cycle['label'], report['labels'][cycle['label']])}, whose volume changes most")
    for label, volumes in report["labels"].items():
        print(f"  label {_named(label, volumes)}: {volumes_in_words(volumes)}")
    for label, cycle in report.get("expert", {}).get("labels", {}).items():
        if cycle["slices"]:
            print(f"  label {label} against the expert on slices {cycle['slices']}: expert EF "
                  f"{cycle['expert']['ef_percent']} %, propagated on those slices and phases "
                  f"{cycle['propagated']['ef_percent']} %")
        else:
            print(f"  label {label}: no slice is contoured by the expert at two phases, so no expert EF")
    return 0


def _name_labels(labels: Dict[str, dict], path: str) -> None:
    """Each label's entry in the report gets its segment's name where the labels are a Slicer segmentation."""
    names = segment_names(path)
    for label, entry in labels.items():
        if label in names:
            entry["name"] = names[label]


def _named(label: str, scores: dict) -> str:
    """``1 (RV cavity)`` where the labels came from a Slicer segmentation, else ``1``."""
    return f"{label} ({scores['name']})" if "name" in scores else label


if __name__ == "__main__":
    sys.exit(main())
