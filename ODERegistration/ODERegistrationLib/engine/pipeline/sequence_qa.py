"""Pictures of a cine sequence: the volume curve with end-diastole, end-systole and the ejection fraction, and a few
phases with the propagated contours over the image."""
from __future__ import annotations

import os

import numpy as np
import SimpleITK as sitk

from .qa import FIXED_CONTOUR, PROPAGATED_CONTOUR, draw_contours
from .cardiac_volumes import volumes_in_words
from .cine import Cine
from .sequence import SequenceResult


def save_volume_curve(result: SequenceResult, cine: Cine, path: str | os.PathLike) -> None:
    """Volume of every label over the cycle (ml against ms, or against the phase where the cine gives no time), ED
    and ES marked (the same phases for every label, from cardiac_volumes.cardiac_cycle), EF in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = cine.times_ms if cine.times_ms is not None else list(range(len(cine.phases)))
    figure, axis = plt.subplots(figsize=(7, 4), layout="constrained")
    cycle = result.report["cycle"]
    for label, volumes in result.volumes_ml.items():
        line, = axis.plot(times, volumes, marker="o", markersize=3,
                          label=f"label {label}: {volumes_in_words(result.report['labels'][str(label)])}")
        for phase, name in ((cycle["ed_phase"], "ED"), (cycle["es_phase"], "ES")):
            axis.annotate(name, (times[phase], volumes[phase]), textcoords="offset points", xytext=(0, 6),
                          ha="center", color=line.get_color(), fontsize=8)
    reference = result.report["reference_phase"]
    axis.axvline(times[reference], color="grey", linestyle=":", linewidth=1,
                 label=f"reference phase {reference} (the labels drawn)")
    axis.set_xlabel("time in the cycle (ms)" if cine.times_ms is not None else "phase (the cine gives no time step)")
    axis.set_ylabel("volume on the labelled slices (ml)")
    axis.margins(y=0.12)  # the ED and ES marks above the curves stay inside the axes
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.savefig(path, dpi=90)
    plt.close(figure)


ZOOM_MARGIN_MM = 30.0
"""The QA picture shows the labels' box on the slice shown plus this margin (the views stay in the image)."""


def save_sequence_qa(result: SequenceResult, cine: Cine, path: str | os.PathLike, phases_shown: int = 4) -> None:
    """The labelled slice nearest the middle of the labelled ones, at the reference phase, ED, ES and phases in
    between, each with the propagated contours (the reference's contours in green on the reference phase)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = result.report
    reference_labels = sitk.GetArrayViewFromImage(result.labels[report["reference_phase"]])
    drawn = [k for k in report["labelled_slices"] if reference_labels[k].any()]  # contours may skip slices
    k = min(drawn, key=lambda slice_: abs(slice_ - (drawn[0] + drawn[-1]) / 2))
    cycle = report["cycle"]
    chosen = sorted({report["reference_phase"], cycle["ed_phase"], cycle["es_phase"],
                     *np.linspace(0, len(cine.phases) - 1, phases_shown).round().astype(int).tolist()})
    rows, columns = np.nonzero(reference_labels[k])
    margin = ZOOM_MARGIN_MM / cine.phases[0].GetSpacing()[0]
    figure, axes = plt.subplots(1, len(chosen), figsize=(3.2 * len(chosen), 3.6), layout="constrained")
    for axis, t in zip(np.atleast_1d(axes), chosen):
        image = sitk.GetArrayViewFromImage(cine.phases[t])[k]
        low, high = np.percentile(image, [0.5, 99.5])
        axis.imshow(image, cmap="gray", vmin=low, vmax=high,
                    aspect=cine.phases[t].GetSpacing()[1] / cine.phases[t].GetSpacing()[0])
        colour = FIXED_CONTOUR if t == report["reference_phase"] else PROPAGATED_CONTOUR
        draw_contours(axis, sitk.GetArrayViewFromImage(result.labels[t])[k], colour, "solid")
        names = [name for phase, name in ((report["reference_phase"], "reference"), (cycle["ed_phase"], "ED"),
                                          (cycle["es_phase"], "ES")) if phase == t]
        time = "" if cine.times_ms is None else f" ({cine.times_ms[t]:g} ms)"
        axis.set_title(f"phase {t}{time}{', ' + ', '.join(names) if names else ''}", fontsize=9)
        axis.set_xlim(columns.min() - margin, columns.max() + margin)  # zoomed on the heart: the contours are legible
        axis.set_ylim(rows.max() + margin, rows.min() - margin)
        axis.set_axis_off()
    figure.suptitle(f"slice {k}: contours drawn on phase {report['reference_phase']} (green) carried to every phase "
                    "(magenta)", fontsize=10)
    figure.savefig(path, dpi=80)
    plt.close(figure)
