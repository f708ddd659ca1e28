"""Input checks that turn bad files into one clear sentence instead of a traceback from deep inside torch."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_LABELS = 1000
"""More distinct values than this is an intensity image, not a label map (each label costs a full resampling)."""
MAX_AXIS_SKEW = 1e-3
"""How far the direction matrix may be from orthonormal (the headers at hand: 5e-8)."""
DOUBTFUL_LABEL_COUNT = 50
"""From this many distinct values on, a label map must also look like one (:data:`MIN_SHARED_NEIGHBOURS`)."""
MIN_SHARED_NEIGHBOURS = 0.5
"""A label map is piecewise constant: most neighbouring voxels off the background share their value (0.87 to 0.94
over the 41 label maps of the development data), where an image's noise makes them differ (0.04 to 0.38 over its 41
images, which hold 224 to 1544 whole, non-negative values: most of them passed as labels on the count alone)."""


class InputError(ValueError):
    """An input image or label map cannot be registered; the message names the input and the problem."""


COMPLEX_PIXELS = (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64)
"""One component per voxel, yet not a grey level: SimpleITK cannot cast them to float (an MR file can hold raw
k-space or phase data this way)."""


def check_image(image: sitk.Image, name: str) -> np.ndarray:
    """Return the image's array as float32 after checking it is a finite, non-constant 2-D or 3-D scalar image."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{name}: has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
                         "a scalar (grey-level) image is needed")
    if image.GetPixelID() in COMPLEX_PIXELS:
        raise InputError(f"{name}: holds complex numbers; a real-valued (grey-level) image is needed, such as "
                         "the magnitude")
    if image.GetDimension() not in (2, 3):
        raise InputError(f"{name}: is {image.GetDimension()}-D; only 2-D images and 3-D volumes can be registered")
    if min(image.GetSize()) == 0 or image.GetNumberOfPixels() < 4:
        raise InputError(f"{name}: is empty (size {image.GetSize()})")
    if sum(n > 1 for n in image.GetSize()) < 2:
        raise InputError(f"{name}: is a line of voxels (size {image.GetSize()}); registration needs at least 2 voxels "
                         "along two axes")
    dim = image.GetDimension()
    direction = np.asarray(image.GetDirection()).reshape(dim, dim)
    if not np.allclose(direction.T @ direction, np.eye(dim), atol=MAX_AXIS_SKEW):
        raise InputError(f"{name}: its voxel axes are not perpendicular (direction {np.round(direction, 4).tolist()}, "
                         "a sheared grid, or a volume under a shearing transform); the map's millimetres and the "
                         "NIfTI outputs (which cannot hold such a grid) assume perpendicular axes: resample the "
                         "image onto such a grid first")
    array = sitk.GetArrayViewFromImage(image)
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name}: contains NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    if max(abs(low), abs(high)) > FLOAT32_MAX:
        raise InputError(f"{name}: has values up to {max(abs(low), abs(high)):.3g}, beyond what float32 holds "
                         f"({FLOAT32_MAX:.3g}); rescale the image")
    if low == high:
        raise InputError(f"{name}: is constant (every voxel is {low:g}); there is nothing to register")
    return array.astype(np.float32)


def check_pair(fixed: sitk.Image, moving: sitk.Image, fixed_name: str, moving_name: str) -> None:
    """Two images of one dimension that differ: the same image chosen twice ran a whole fit to the identity and
    advised raising the learning rate."""
    if fixed.GetDimension() != moving.GetDimension():
        raise InputError(f"{moving_name}: is {moving.GetDimension()}-D but {fixed_name} is {fixed.GetDimension()}-D; "
                         "both images need the same dimension")
    identical = (fixed.GetPixelID() == moving.GetPixelID() and same_grid(fixed, moving)
                 and np.array_equal(sitk.GetArrayViewFromImage(fixed), sitk.GetArrayViewFromImage(moving)))
    if identical:
        raise InputError(f"{moving_name}: is the same image as {fixed_name} (every voxel equal, on one grid), so "
                         "there is nothing to register: choose the other image (the other phase)")


def same_grid(image: sitk.Image, other: sitk.Image) -> bool:
    """Same size, spacing, origin and direction, up to the rounding of file headers."""
    return (image.GetSize() == other.GetSize()
            and np.allclose(image.GetSpacing(), other.GetSpacing(), rtol=1e-4, atol=1e-5)
            and np.allclose(image.GetOrigin(), other.GetOrigin(), atol=1e-3)
            and np.allclose(image.GetDirection(), other.GetDirection(), atol=1e-4))


def check_labels(labels: sitk.Image, image: sitk.Image, labels_name: str, image_name: str) -> np.ndarray:
    """Labels must be integer-valued, non-negative and lie on exactly the grid of their image."""
    found = (f"holds {labels.GetNumberOfComponentsPerPixel()} values per voxel"
             if labels.GetNumberOfComponentsPerPixel() != 1
             else "holds complex values" if labels.GetPixelID() in COMPLEX_PIXELS
             else f"is {labels.GetDimension()}-D (size {labels.GetSize()})"
             if labels.GetDimension() != image.GetDimension() else None)
    if found:
        raise InputError(f"{labels_name}: {found}, not a scalar {image.GetDimension()}-D label map like {image_name}")
    if not same_grid(labels, image):
        raise InputError(f"{labels_name}: its grid (size {labels.GetSize()}, spacing "
                         f"{tuple(round(s, 4) for s in labels.GetSpacing())}) differs from the grid of {image_name} "
                         f"(size {image.GetSize()}, spacing {tuple(round(s, 4) for s in image.GetSpacing())}, "
                         "or origin/direction)")
    array = sitk.GetArrayFromImage(labels)
    if not np.all(np.isfinite(array)) or np.any(array != np.round(array)) or array.min() < 0:
        raise InputError(f"{labels_name}: a label map must hold non-negative whole numbers")
    values = np.unique(array)
    if values.size > MAX_LABELS:
        raise InputError(f"{labels_name}: has {values.size} distinct values, more than a label map plausibly has "
                         f"({MAX_LABELS}); it looks like an intensity image")
    if values.size >= DOUBTFUL_LABEL_COUNT:
        shared = shared_neighbour_fraction(array)
        if shared < MIN_SHARED_NEIGHBOURS:
            raise InputError(f"{labels_name}: looks like an intensity image, not a label map: {values.size} distinct "
                             f"values, and only {shared:.0%} of neighbouring voxels off the background share their "
                             "value (in a label map most do)")
    return array.astype(np.int64)


def shared_neighbour_fraction(array: np.ndarray) -> float:
    """Of the pairs of neighbouring voxels not both 0, the fraction with one value, along the axis where it is
    highest (a thick-slice stack's slices can differ while each slice is piecewise constant)."""
    fractions = []
    for axis in range(array.ndim):
        if array.shape[axis] < 2:
            continue
        along = np.moveaxis(array, axis, 0)
        after, before = along[1:], along[:-1]
        counted = (after != 0) | (before != 0)
        if counted.any():
            fractions.append(float(np.count_nonzero((after == before) & counted) / np.count_nonzero(counted)))
    return max(fractions, default=1.0)
