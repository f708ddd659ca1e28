"""Compare `sequence` settings on every ED -> ES stack at hand, each run as a two-phase cine: Dice, EF error, time.

    python -m benchmarks.cine_sweep --data ../shared/data "" "--iterations 120 --learning-rate 0.0015"

The development cine is one patient with a low ejection fraction (25.8 %), so its end-systole moves little; a
setting chosen on it alone may not follow a heart that contracts normally. Here the reference (ED) stack of each
fully labelled 3-D pair (ACDC's five, EF 13 to 61 %, and the Sunnybrook stack, the development cine's phases 18 and 7)
is registered onto its ES stack by ``register_sequence``, as a cine's reference meets its end-systolic phase. Each
argument is one setting, written as options of ``oderegistration sequence`` on top of the `sequence` preset
(``""`` is the preset itself). Per setting: mean Dice over the evaluated labels of each pair at ES (on the
expert's labelled slices), the LV cavity's ejection fraction on the slices the expert drew at both phases against the
expert's, folded voxels forward and inverse, and the registration time. ``--peers elastix demons`` adds rows for
the peers as cine_benchmark runs them (the reference registered onto the other phase as a 3-D volume, in the
engine's region and on the whole stacks; their folds are the forward field's, they give no inverse). For choosing
the `sequence` defaults; the cine table in docs/benchmarks.md comes from cine_benchmark.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import SimpleITK as sitk

from ODERegistrationLib.cli.main import build_parser, parameters_from_arguments
from ODERegistrationLib.engine.pipeline.metrics import label_scores
from ODERegistrationLib.engine.pipeline.cine import Cine
from ODERegistrationLib.engine.pipeline.sequence import register_sequence

from .cine_benchmark import run_peer
from .dataset import load_pairs
from .methods import PEERS

CAVITY = ("LV cavity", "LV blood pool")
"""The label whose ejection fraction is scored, by how its name in the datasets' manifests begins."""


def parameters_of(setting: str):
    placeholders = ["--cine", "-", "--labels", "-", "--reference-phase", "0", "--output-dir", "-"]
    return parameters_from_arguments(build_parser().parse_args(["sequence", *placeholders, *shlex.split(setting)]))


def run_case(pair, parameters, method: str = "ode") -> dict:
    """The pair's ED (moving) stack as phase 0 of a two-phase cine and its ES (fixed) stack as phase 1, registered
    by the engine's sequence or by a peer (``method``)."""
    ed, es = (sitk.Cast(pair.image(key), sitk.sitkFloat32) for key in ("moving", "fixed"))
    ed_labels, es_labels = pair.image("moving_labels"), pair.image("fixed_labels")
    cine = Cine([ed, es], [0.0, 1.0], 3)
    if method == "ode":
        start = time.perf_counter()
        result = register_sequence(cine, ed_labels, 0, parameters)
        seconds = time.perf_counter() - start
        phase = result.report["per_phase"][1]
        labels, folds = result.labels, phase["folded_voxels"] + phase["inverse_folded_voxels"]
    else:
        labels, folds, seconds = run_peer(method, cine, ed_labels, 0, parameters)
    propagated = sitk.GetArrayFromImage(labels[1])
    if pair.labelled_slices_fixed:  # the expert's other slices are unlabelled, not background
        unlabelled = np.ones(propagated.shape[0], bool)
        unlabelled[pair.labelled_slices_fixed] = False
        propagated[unlabelled] = 0
    propagated = sitk.GetImageFromArray(propagated)
    propagated.CopyInformation(es_labels)
    scores = label_scores(es_labels, propagated, pair.eval_labels)
    dice = np.mean([scores[label].dice for label in pair.eval_labels])
    cavity = next(label for label, name in pair.label_names.items() if name.startswith(CAVITY))
    arrays = [sitk.GetArrayFromImage(image) == cavity for image in (ed_labels, es_labels, propagated)]
    both = [k for k in range(arrays[0].shape[0]) if arrays[0][k].any() and arrays[1][k].any()]
    ed_volume, expert_es, propagated_es = (float(a[both].sum()) for a in arrays)
    return {"id": pair.id, "dice": float(dice), "seconds": seconds, "folds": folds,
            "expert_ef": 100.0 * (ed_volume - expert_es) / ed_volume,
            "ef": 100.0 * (ed_volume - propagated_es) / ed_volume}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cine_sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the folder holding acdc/ and sunnybrook/")
    parser.add_argument("--peers", nargs="*", default=[], choices=PEERS,
                        help="peers to add, each in the region of the first setting and on the whole stacks")
    parser.add_argument("settings", nargs="+", help="one quoted string of sequence options per setting")
    arguments = parser.parse_args(argv)
    pairs = [pair for dataset in ("acdc", "sunnybrook") for pair in load_pairs(arguments.data / dataset, 3)]
    print("| setting | mean Dice at ES | mean abs EF error (points) | largest | EF per pair, % (expert) | "
          "folded voxels | s |")
    print("|---|---|---|---|---|---|---|")
    runs = [(f"`{setting or 'the sequence preset'}`", parameters_of(setting), "ode") for setting in arguments.settings]
    runs += [(f"{peer}{' in the region' if region == 'auto' else ', whole stacks'}",
              parameters_of(arguments.settings[0]).replace(region=region), peer)
             for peer in arguments.peers for region in ("auto", "whole")]
    for title, parameters, method in runs:
        rows = [run_case(pair, parameters, method) for pair in pairs]
        errors = [abs(row["ef"] - row["expert_ef"]) for row in rows]
        efs = ", ".join(f"{row['ef']:.0f} ({row['expert_ef']:.0f})" for row in rows)
        print(f"| {title} | {np.mean([row['dice'] for row in rows]):.3f} | {np.mean(errors):.1f} | {max(errors):.1f} | "
              f"{efs} | {sum(row['folds'] for row in rows)} | {sum(row['seconds'] for row in rows):.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
