"""The QA picture a clinician reads after a run: contours, images, differences, the deformation grid and det J,
on one slice of a volume (where the propagated labels are largest, else the middle of the region) or the image
(2-D), one PNG."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional, Tuple

import numpy as np
import SimpleITK as sitk

from .metrics import index_to_physical_matrix
from .registration import RegistrationResult

if TYPE_CHECKING:  # matplotlib itself is imported when a picture is drawn
    import matplotlib.axes

GRID_LINES = 16
FIXED_CONTOUR = "#00ff00"
"""Fixed (reference) labels: solid green."""
PROPAGATED_CONTOUR = "#ff00ff"
"""Propagated moving labels: dashed magenta."""
REGION_OUTLINE = "#ff8c00"
"""The region the map was fitted in, on the det J panel: dashed orange (neither red nor blue of det J's colours)."""


def save_qa_figure(fixed: sitk.Image, moving: sitk.Image, result: RegistrationResult, path: str | os.PathLike,
                   fixed_labels: Optional[sitk.Image] = None, moving_labels: Optional[sitk.Image] = None) -> None:
    """Eight panels and a caption; matplotlib is imported only here."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dim = fixed.GetDimension()
    across = _slice_axis(fixed)
    shown, why = _shown_slice(result, across)
    rows_mm, columns_mm = [s for axis, s in enumerate(fixed.GetSpacing()[::-1]) if axis != across]
    on_fixed = lambda image, interpolator=sitk.sitkLinear: sitk.Resample(image, fixed, sitk.Transform(), interpolator, 0)
    middle = lambda image: _cut(sitk.GetArrayFromImage(image), across, shown)
    fixed_slice, moving_slice, warped_slice, jacobian_slice = (
        middle(image)
        for image in (fixed, on_fixed(sitk.Cast(moving, sitk.sitkFloat32)), result.warped, result.jacobian))
    low, high = np.percentile(fixed_slice, [0.5, 99.5])
    aspect = rows_mm / columns_mm
    grey = {"cmap": "gray", "vmin": low, "vmax": high, "origin": "upper", "aspect": aspect}

    figure, axes = plt.subplots(2, 4, figsize=(16, 9.4), layout="constrained")
    axes[0, 0].imshow(fixed_slice, **grey)
    axes[0, 0].set_title("fixed" + (": labels (green) and propagated (magenta, dashed)"
                                    if result.warped_labels is not None else ""), fontsize=9)
    if fixed_labels is not None:
        draw_contours(axes[0, 0], middle(on_fixed(fixed_labels, sitk.sitkNearestNeighbor)), FIXED_CONTOUR,
                      "solid")
    if result.warped_labels is not None:
        draw_contours(axes[0, 0], middle(result.warped_labels), PROPAGATED_CONTOUR, "dashed")
    _draw_scale_bar(axes[0, 0], fixed_slice.shape, columns_mm)
    axes[0, 1].imshow(moving_slice, **grey)
    axes[0, 1].set_title("moving (unregistered)" + (": its labels" if moving_labels is not None else ""), fontsize=9)
    if moving_labels is not None:
        draw_contours(axes[0, 1], middle(on_fixed(moving_labels, sitk.sitkNearestNeighbor)), PROPAGATED_CONTOUR,
                      "solid")
    axes[0, 2].imshow(warped_slice, **grey)
    axes[0, 2].set_title("warped moving", fontsize=9)
    axes[0, 3].imshow(fixed_slice, **grey)
    in_plane = [dim - 1 - axis for axis in range(dim) if axis != across][::-1]  # (columns, rows) components
    _draw_grid(axes[0, 3], _cut(_voxel_displacement(result.forward), across, shown)[..., in_plane])
    axes[0, 3].set_title("deformation grid (forward map) on fixed", fontsize=9)
    axes[1, 0].imshow(_checkerboard(fixed_slice, warped_slice), **grey)
    axes[1, 0].set_title("checkerboard fixed / warped", fontsize=9)
    spread = float(high - low) or 1.0
    for axis, other, name in ((axes[1, 1], moving_slice, "before"), (axes[1, 2], warped_slice, "after")):
        axis.imshow(fixed_slice - other, cmap="gray", vmin=-0.5 * spread, vmax=0.5 * spread, origin="upper",
                    aspect=aspect)
        axis.set_title(f"difference fixed - moving, {name} (grey = equal)", fontsize=9)
    image = axes[1, 3].imshow(jacobian_slice, cmap="bwr", vmin=0.0, vmax=2.0, origin="upper", aspect=aspect)
    axes[1, 3].set_title(f"det J (min {result.report['min_jacobian']:.2f}, folded voxels "
                         f"{result.report['folded_voxels']})", fontsize=9)
    outline = region_outline(result.report["region"], dim, across, shown)
    if outline is not None:
        from matplotlib.patches import Rectangle

        axes[1, 3].add_patch(Rectangle(outline[:2], *outline[2:], fill=False, edgecolor=REGION_OUTLINE,
                                       linestyle="dashed", linewidth=1.2))
    figure.colorbar(image, ax=axes[1, 3], fraction=0.046)
    for axis in axes.flat:
        axis.set_axis_off()
    figure.suptitle(_title(result), fontsize=11)
    figure.supxlabel(_caption(result, f"slice {shown} ({why})" if across is not None else "the image"), fontsize=8,
                     wrap=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)


def _title(result: RegistrationResult) -> str:
    scores = result.report.get("labels")
    if not scores:
        return "ODE registration QA"
    return "Dice before -> after: " + ", ".join(
        f"label {label} {values['before']['dice']:.3f} -> {values['after']['dice']:.3f}" for label, values in scores.items())


def _caption(result: RegistrationResult, where: str) -> str:
    region = result.report["region"]
    outside = ("" if region["source"] == "whole image" else
               f" Outside the region it was fitted in ({' x '.join(map(str, region['index_size']))} voxels, dashed "
               f"orange on det J) the map fades to the identity over {region['fade_mm']:g} mm, so det J may show the "
               "box's edges.")
    return (f"All panels show {where} on the fixed grid. det J is the forward map's local change of area/volume: "
            "white = unchanged, blue = compressed, red = expanded, folded where <= 0. The velocities live on a grid "
            f"{result.report['parameters']['net_downsampling']}x coarser than each pyramid level, so det J varies "
            f"smoothly over blocks of that size.{outside}")


def region_outline(region: dict, dim: int, across: Optional[int],
                   shown: Optional[int]) -> Optional[Tuple[float, float, int, int]]:
    """The fitted region's box on the shown slice as (column, row, width, height) in the panel's pixel coordinates
    (voxel centres at integers); None for the whole image or a slice outside the box. It tells where the map is
    fitted and where it only fades out, which det J's straight edges otherwise leave a reader to guess."""
    start, size = region["index_start"], region["index_size"]  # in (i, j[, k]) order: array axis a is dim - 1 - a
    if region["source"] == "whole image":
        return None
    if across is not None and not 0 <= shown - start[dim - 1 - across] < size[dim - 1 - across]:
        return None
    rows_axis, columns_axis = (dim - 1 - axis for axis in range(dim) if axis != across)
    return start[columns_axis] - 0.5, start[rows_axis] - 0.5, size[columns_axis], size[rows_axis]


def _slice_axis(image: sitk.Image) -> Optional[int]:
    """The array axis the picture cuts across: a volume's thinnest (k unless another is thinner, as in a single
    sagittal slice), None for a 2-D image."""
    return int(np.argmin(sitk.GetArrayViewFromImage(image).shape)) if image.GetDimension() == 3 else None


def _shown_slice(result: RegistrationResult, across: Optional[int]) -> Tuple[Optional[int], str]:
    """The slice of a volume the picture shows, and why: where the propagated labels cover most voxels (the
    contours are what a clinician checks; the middle slice of a stack may hold none), else the middle of the region
    the map was fitted in. None for a 2-D image."""
    if across is None:
        return None, ""
    if result.warped_labels is not None:
        labelled = np.moveaxis(sitk.GetArrayViewFromImage(result.warped_labels) != 0, across, 0)
        counts = labelled.reshape(labelled.shape[0], -1).sum(axis=1)
        if counts.any():
            return int(np.argmax(counts)), "the one the propagated labels cover most"
    region = result.report["region"]
    axis = len(region["index_start"]) - 1 - across  # the report's corners are in (i, j, k) order
    return region["index_start"][axis] + region["index_size"][axis] // 2, "the middle of the region"


def _cut(array: np.ndarray, across: Optional[int], index: Optional[int]) -> np.ndarray:
    """That slice across that axis of a volume's array (scalar or vector); a 2-D image's array as it is."""
    return array if across is None else np.take(array, index, axis=across)


def _voxel_displacement(field: sitk.Image) -> np.ndarray:
    vectors = sitk.GetArrayFromImage(field)
    return vectors @ np.linalg.inv(index_to_physical_matrix(field)).T


def _checkerboard(a: np.ndarray, b: np.ndarray, tiles: int = 8) -> np.ndarray:
    rows, columns = np.indices(a.shape)
    size = max(a.shape) // tiles or 1
    return np.where(((rows // size) + (columns // size)) % 2 == 0, a, b)


def draw_contours(axis: "matplotlib.axes.Axes", labels: np.ndarray, colour: str, style: str) -> None:
    for value in np.unique(labels):
        if value != 0:
            axis.contour(labels == value, levels=[0.5], colors=colour, linestyles=style, linewidths=1.0)


def _draw_scale_bar(axis, shape, spacing_mm: float) -> None:
    """A white bar of a round length near a fifth of the width, labelled in mm, at the bottom left."""
    width_mm = shape[1] * spacing_mm
    length_mm = next(length for length in (100, 50, 20, 10, 5, 2, 1) if length <= width_mm / 5 or length == 1)
    rows, columns = shape
    x0, y = 0.05 * columns, 0.93 * rows
    axis.plot([x0, x0 + length_mm / spacing_mm], [y, y], color="white", linewidth=3)
    axis.text(x0, y - 0.02 * rows, f"{length_mm} mm", color="white", fontsize=8)


def _draw_grid(axis, displacement: np.ndarray) -> None:
    """Lines of constant i and j, drawn where the forward map sends them (x + u(x)), kept inside the image."""
    rows, columns = displacement.shape[:2]
    i, j = np.meshgrid(np.arange(columns), np.arange(rows))
    x, y = i + displacement[..., 0], j + displacement[..., 1]
    step = max(1, max(rows, columns) // GRID_LINES)
    for row in range(0, rows, step):
        axis.plot(x[row], y[row], color="yellow", linewidth=0.6)
    for column in range(0, columns, step):
        axis.plot(x[:, column], y[:, column], color="yellow", linewidth=0.6)
    axis.set_xlim(-0.5, columns - 0.5)
    axis.set_ylim(rows - 0.5, -0.5)
