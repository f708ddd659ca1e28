"""A known smooth diffeomorphic warp applied to a real image is recovered by the registration."""
import numpy as np
import SimpleITK as sitk

from ODERegistrationLib.engine import RegistrationParameters, register_images
from ODERegistrationLib.engine.pipeline.metrics import index_to_physical_matrix

from conftest import load_pair, shrink_pair


def analytic_field(reference: sitk.Image, amplitude_mm: float) -> sitk.Image:
    """A smooth bump of displacement centred on the image (a diffeomorphism: its gradient is small)."""
    rows, columns = reference.GetSize()[1], reference.GetSize()[0]
    j, i = np.mgrid[0:rows, 0:columns].astype(np.float64)
    bump = np.exp(-(((i - columns / 2) / (columns / 5)) ** 2 + ((j - rows / 2) / (rows / 5)) ** 2))
    physical = np.stack([amplitude_mm * bump, -0.6 * amplitude_mm * bump], axis=-1)
    field = sitk.GetImageFromArray(physical, isVector=True)
    field.CopyInformation(reference)
    return field


def test_known_warp_is_recovered(data_dir):
    fixed = shrink_pair(load_pair(data_dir, "sunnybrook", "scd_SCD0000101_sl05_2d"), 2)["fixed"]
    truth = analytic_field(fixed, amplitude_mm=8.0)
    moving = sitk.Resample(fixed, fixed, sitk.DisplacementFieldTransform(sitk.Image(truth)), sitk.sitkLinear, 0.0)
    # moving(x) = fixed(x + t(x)); the forward map must send fixed points to where the content went: x + t^-1(x)
    inverse_truth = sitk.InvertDisplacementField(truth, maximumNumberOfIterations=50)
    result = register_images(fixed, moving, RegistrationParameters(iterations=200, similarity="mse"))

    expected = sitk.GetArrayFromImage(inverse_truth)
    found = sitk.GetArrayFromImage(result.forward)
    centre = np.linalg.norm(expected, axis=-1) > 2.0  # where the warp moves tissue by more than 2 mm
    error = np.linalg.norm(found - expected, axis=-1)[centre].mean()
    motion = np.linalg.norm(expected, axis=-1)[centre].mean()
    spacing = float(np.abs(index_to_physical_matrix(fixed)).max())
    assert error < 0.35 * motion, (error, motion)
    assert error < spacing
    assert result.report["folded_voxels"] == 0
