"""The QA picture: fixed, moving, warped, checkerboard, deformation grid and Jacobian map, one PNG."""
from __future__ import annotations

import os

import numpy as np
import SimpleITK as sitk

from .metrics import index_to_physical_matrix
from .registration import RegistrationResult

GRID_LINES = 16


def save_qa_figure(fixed: sitk.Image, moving: sitk.Image, result: RegistrationResult, path: str | os.PathLike) -> None:
    """Six panels on the middle slice (3-D) or the image (2-D); matplotlib is imported only here."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dim = fixed.GetDimension()
    moving_on_fixed = sitk.Resample(sitk.Cast(moving, sitk.sitkFloat32), fixed, sitk.Transform(), sitk.sitkLinear, 0.0)
    fixed_slice, moving_slice, warped_slice, jacobian_slice = (
        _middle_slice(sitk.GetArrayFromImage(image), dim) for image in (fixed, moving_on_fixed, result.warped, result.jacobian))
    low, high = np.percentile(fixed_slice, [0.5, 99.5])
    grey = {"cmap": "gray", "vmin": low, "vmax": high, "origin": "upper"}

    figure, axes = plt.subplots(2, 3, figsize=(12, 8.4))
    axes[0, 0].imshow(fixed_slice, **grey)
    axes[0, 0].set_title("fixed")
    axes[0, 1].imshow(moving_slice, **grey)
    axes[0, 1].set_title("moving (unregistered)")
    axes[0, 2].imshow(warped_slice, **grey)
    axes[0, 2].set_title("warped moving")
    axes[1, 0].imshow(_checkerboard(fixed_slice, warped_slice), **grey)
    axes[1, 0].set_title("checkerboard fixed / warped")
    axes[1, 1].imshow(fixed_slice, **grey)
    _draw_grid(axes[1, 1], _middle_slice(_voxel_displacement(result.forward), dim))
    axes[1, 1].set_title("deformation grid")
    image = axes[1, 2].imshow(jacobian_slice, cmap="bwr", vmin=0.0, vmax=2.0, origin="upper")
    axes[1, 2].set_title(f"det J (min {result.report['min_jacobian']:.2f}, folds {result.report['folded_voxels']})")
    figure.colorbar(image, ax=axes[1, 2], fraction=0.046)
    for axis in axes.flat:
        axis.set_axis_off()
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def _middle_slice(array: np.ndarray, dim: int) -> np.ndarray:
    """The middle k slice of a volume's array (scalar or vector); a 2-D image's array as it is."""
    return array[array.shape[0] // 2] if dim == 3 else array


def _voxel_displacement(field: sitk.Image) -> np.ndarray:
    vectors = sitk.GetArrayFromImage(field)
    return vectors @ np.linalg.inv(index_to_physical_matrix(field)).T


def _checkerboard(a: np.ndarray, b: np.ndarray, tiles: int = 8) -> np.ndarray:
    rows, columns = np.indices(a.shape)
    size = max(a.shape) // tiles or 1
    return np.where(((rows // size) + (columns // size)) % 2 == 0, a, b)


def _draw_grid(axis, displacement: np.ndarray) -> None:
    """Lines of constant i and j, drawn where the forward map sends them (x + u(x))."""
    rows, columns = displacement.shape[:2]
    i, j = np.meshgrid(np.arange(columns), np.arange(rows))
    x, y = i + displacement[..., 0], j + displacement[..., 1]
    step = max(1, max(rows, columns) // GRID_LINES)
    for row in range(0, rows, step):
        axis.plot(x[row], y[row], color="yellow", linewidth=0.6)
    for column in range(0, columns, step):
        axis.plot(x[:, column], y[:, column], color="yellow", linewidth=0.6)
