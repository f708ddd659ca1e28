"""The cine table: this engine's sequence against elastix and demons run phase by phase from the reference.

    python -m benchmarks.cine_benchmark --data ../shared/data/sunnybrook/cine --output-dir bench/cine

The peers register the reference phase onto every other phase as 3-D volumes, one phase at a time, the way
SlicerSequenceRegistration runs elastix; each peer runs on the whole frames and on the box around the reference
labels that the engine uses (the same box, fields continued outside it as the engine continues its own), so it is
counted at its better setting. Every method's fields are scored by the same code: the reference labels
propagated to every phase, Dice / HD95 of the LV blood pool at each contoured slice's end-systolic phase, the
ejection fraction on the expert's slices against the expert's, folded voxels over all phases, time.

``ode-chained`` is the strategy the engine does not use, kept here to show why: every phase registered onto its
neighbour (the same number of slice problems, in one batch), and each phase's map composed along the shorter way
round the cycle from the reference.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import SimpleITK as sitk

from ODERegistrationLib.cli.main import add_parameter_options, parameters_from_arguments
from ODERegistrationLib.engine.pipeline.metrics import folding, jacobian_determinant
from ODERegistrationLib.engine.presets import SEQUENCE_PRESET
from ODERegistrationLib.engine.pipeline.registration import register_images, warp_labels
from ODERegistrationLib.engine.pipeline.cardiac_volumes import against_experts
from ODERegistrationLib.engine.pipeline.cine import expert_phases, read_cine, reference_labels
from ODERegistrationLib.engine.pipeline.sequence import register_sequence, slices_as_one_stack, split_batch

from .dataset import DatasetError, read_manifest
from .evaluate import run_in_region
from .methods import METHODS, PEERS

CAVITY = 1
"""The label scored: the LV blood pool, contoured at ED and ES on every contoured slice."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cine_benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with the cine manifest.json")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--methods", nargs="+", default=["ode", "elastix", "demons"],
                        choices=["ode", "ode-chained", *PEERS])
    parser.add_argument("--roi", nargs="+", choices=("auto", "whole"), default=["auto", "whole"],
                        help="settings of the peers: the box around the reference labels, the whole frames")
    parser.add_argument("--phases", nargs="+", type=int, metavar="T",
                        help="only these phases (the reference among them): ED and ES alone make a quick sweep")
    add_parameter_options(parser, SEQUENCE_PRESET)  # the engine's options, as `oderegistration sequence` takes them
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    arguments = build_parser().parse_args(argv)
    parameters = parameters_from_arguments(arguments).replace(device="cpu")
    try:
        manifest = read_manifest(arguments.data, "sequences")
    except DatasetError as error:
        print(f"cine benchmark: {error}", file=sys.stderr)
        return 2
    arguments.output_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for entry in manifest["sequences"]:
        cine = read_cine(sitk.ReadImage(str(arguments.data / entry["cine"])), False, entry["cine"])
        expert_image = sitk.ReadImage(str(arguments.data / entry["labels"]))
        reference = entry["ed_phase_modal"]
        labels = reference_labels(expert_image, cine, reference, entry["labels"])
        experts = expert_phases(expert_image, cine, entry["labels"], labels)
        if arguments.phases:
            kept = sorted(set(arguments.phases) | {reference})
            cine = dataclasses.replace(cine, phases=[cine.phases[t] for t in kept],
                                       times_ms=cine.times_ms and [cine.times_ms[t] for t in kept],
                                       time_axis=None)  # no longer one file's evenly spaced phases
            experts, reference = [experts[t] for t in kept], kept.index(reference)
        for method in arguments.methods:
            for region in (["auto"] if method.startswith("ode") else arguments.roi):
                print(f"cine benchmark: {entry['id']} {method} {region}", file=sys.stderr, flush=True)
                run = {"ode": _run_ode, "ode-chained": _run_chained}.get(method, run_peer)
                propagated, folded, seconds = run(method, cine, labels, reference, parameters.replace(region=region))
                rows.append(_score(entry, method + ("+roi" if region == "auto" else ""), propagated, experts,
                                   folded, seconds, len(cine.phases) - 1))
    (arguments.output_dir / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    table = _markdown(rows, parameters)
    (arguments.output_dir / "summary.md").write_text(table)
    print(table)
    return 0


def _run_ode(method, cine, labels, reference, parameters):
    result = register_sequence(cine, labels, reference, parameters)
    return result.labels, result.report["folded_voxels"], result.report["seconds"]


def _run_chained(method, cine, labels, reference, parameters):
    """Each phase registered onto its neighbour nearer the reference, all in one batch; the reference's map to a
    phase is the composition of the neighbours' maps along the shorter way round the cycle."""
    count = len(cine.phases)
    paths = {t: _path(reference, t, count) for t in range(count)}
    starts = sorted({start for path in paths.values() for start, _ in path})
    label_array = sitk.GetArrayFromImage(labels)
    slices = [k for k in range(label_array.shape[0]) if label_array[k].any()]
    reference_image = cine.phases[reference]
    stack = lambda arrays: slices_as_one_stack(np.concatenate(arrays), reference_image)
    phase_slices = lambda t: sitk.GetArrayFromImage(cine.phases[t])[slices]
    result = register_images(stack([phase_slices((t + 1) % count) for t in starts]),
                             stack([phase_slices(t) for t in starts]), parameters.replace(mode="slices"),
                             moving_labels=stack([label_array[slices]] * len(starts)))
    pairs = {t: (forward, backward) for t, (forward, backward, _, _) in
             zip(starts, split_batch(result, len(starts), slices, reference_image, label_array))}
    start = time.perf_counter()
    propagated, folded = [], 0
    for t in range(count):
        transform = sitk.CompositeTransform(sitk.Transform(3, sitk.sitkIdentity))
        for pair_start, direction in paths[t]:  # the last added acts first: the step next to phase t
            transform.AddTransform(sitk.DisplacementFieldTransform(sitk.Image(pairs[pair_start][direction])))
        field = sitk.TransformToDisplacementField(transform, sitk.sitkVectorFloat64, reference_image.GetSize(),
                                                  reference_image.GetOrigin(), reference_image.GetSpacing(),
                                                  reference_image.GetDirection())
        folded += folding(jacobian_determinant(field)).folded_voxels
        propagated.append(labels if t == reference else warp_labels(labels, cine.phases[t], field))
    return propagated, folded, result.report["seconds"] + time.perf_counter() - start


def _path(reference: int, phase: int, count: int) -> List:
    """(pair start s, 0 = forward map of the pair s -> s+1 taking points of s+1 to s, 1 = its backward map taking
    points of s to s+1), from the reference's end to the phase's end, along the shorter way round the cycle."""
    ahead = (phase - reference) % count
    if ahead <= count - ahead:
        return [((reference + k) % count, 0) for k in range(ahead)]
    return [((reference - k - 1) % count, 1) for k in range(count - ahead)]


def run_peer(method, cine, labels, reference, parameters):
    """Reference -> each phase, one 3-D registration per phase; the time is the registrations' alone."""
    propagated, folded, seconds = [], 0, 0.0
    options = {"region": parameters.region, "ode_parameters": parameters}
    for t, phase in enumerate(cine.phases):
        if t == reference:
            propagated.append(labels)
            continue
        output = run_in_region(METHODS[method], phase, cine.phases[reference], labels, options)
        seconds += output.seconds
        folded += folding(jacobian_determinant(output.forward)).folded_voxels
        propagated.append(warp_labels(labels, phase, output.forward))
    return propagated, folded, seconds


def _score(entry: Dict, method: str, propagated, experts, folded: int, seconds: float, registered: int) -> Dict:
    voxel_ml = 1.0  # volumes cancel in the ejection fraction; the report's ml come from the engine's own run
    scores = against_experts(propagated, experts, [CAVITY], voxel_ml)
    cycle = scores["labels"][str(CAVITY)]
    es = cycle["es_phase_per_slice"]
    frames = [frame[str(CAVITY)] for frame in scores["frames"]
              if str(frame["slice"]) in es and frame["phase"] == es[str(frame["slice"])]]
    expert_ef, ef = cycle["expert"]["ef_percent"], cycle["propagated"]["ef_percent"]
    return {"sequence": entry["id"], "method": method, "es_slices": len(frames),
            "es_dice": statistics.mean(f["dice"] for f in frames),
            "es_hd95_mm": statistics.mean(f["hausdorff95_mm"] for f in frames),
            "ef_percent": ef, "expert_ef_percent": expert_ef, "ef_error": abs(ef - expert_ef),
            "folded_voxels": folded, "seconds": seconds, "seconds_per_phase": seconds / registered}


def _markdown(rows: List[Dict], parameters) -> str:
    lines = [f"## Cine sequences: reference (ED) phase to every phase; engine preset values: "
             f"{parameters.iterations} iterations, net grid /{parameters.net_downsampling}, "
             f"margin {parameters.region_margin_mm:g} mm",
             "",
             "| sequence | method | LV Dice at ES (mean of slices) | HD95 mm | EF % (expert) | abs EF error | "
             "folded voxels, all phases | s per sequence | s per phase |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['sequence']} | {row['method']} | {row['es_dice']:.3f} ({row['es_slices']} slices) | "
                     f"{row['es_hd95_mm']:.2f} | {row['ef_percent']:.1f} ({row['expert_ef_percent']:.1f}) | "
                     f"{row['ef_error']:.1f} | {row['folded_voxels']} | {row['seconds']:.0f} | "
                     f"{row['seconds_per_phase']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
