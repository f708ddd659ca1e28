"""Thick-slice stacks: the 3-D through-plane map is fitted first and composed with the slices' maps."""
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from ODERegistrationLib.engine import RegistrationParameters, register_images
from ODERegistrationLib.engine.pipeline.layout import TensorLayout
from ODERegistrationLib.engine.pipeline.metrics import jacobian_determinant, label_scores
from ODERegistrationLib.engine.pipeline.registration import stackwise

SLICE_MM = 6.0
SHIFT_MM = 6.0
DEFAULT = RegistrationParameters().through_plane_sigma_mm


def blob_stack(centre_z_mm: float) -> sitk.Image:
    """A bright ellipsoid (20 mm across in-plane, 36 mm along the slices) in a 2 x 2 x 6 mm stack of 10 slices."""
    k, j, i = np.mgrid[0:10, 0:40, 0:40].astype(np.float64)
    radius = np.sqrt(((i - 20) * 2 / 10) ** 2 + ((j - 20) * 2 / 10) ** 2 + ((k * SLICE_MM - centre_z_mm) / 18) ** 2)
    image = sitk.GetImageFromArray((100.0 / (1.0 + np.exp((radius - 1.0) * 8.0))).astype(np.float32))
    image.SetSpacing((2.0, 2.0, SLICE_MM))
    return image


@pytest.fixture(scope="module")
def stack_pair():
    fixed, moving = blob_stack(27.0), blob_stack(27.0 + SHIFT_MM)  # the moving blob sits one slice further along
    labels = [sitk.Cast(image > 50, sitk.sitkUInt8) for image in (fixed, moving)]
    results = {sigma: register_images(fixed, moving, RegistrationParameters(through_plane_sigma_mm=sigma),
                                      moving_labels=labels[1], fixed_labels=labels[0]) for sigma in (0.0, DEFAULT)}
    return fixed, moving, labels, results


def test_the_through_plane_map_follows_motion_across_the_slices(stack_pair):
    fixed, _, labels, results = stack_pair
    centre = sitk.GetArrayFromImage(results[DEFAULT].forward)[4:6, 18:22, 18:22, 2]  # along the slices, in mm
    assert results[DEFAULT].report["mode"] == "slices" and results[DEFAULT].report["through_plane"]["iterations"] > 0
    assert centre.mean() > 0.5 * SHIFT_MM, centre.mean()  # the fixed centre is found one slice further on
    assert np.all(sitk.GetArrayFromImage(results[0.0].forward)[..., 2] == 0)  # the slices alone cannot
    assert results[0.0].report["through_plane"] is None
    dice = {sigma: label_scores(labels[0], result.warped_labels, [1])[1].dice for sigma, result in results.items()}
    assert dice[DEFAULT] > dice[0.0] + 0.02, dice


def test_the_composed_maps_fold_nothing_and_are_inverse_by_simpleitk(stack_pair):
    fixed, _, _, results = stack_pair
    forward, backward = (sitk.Cast(field, sitk.sitkVectorFloat64) for field in
                         (results[DEFAULT].forward, results[DEFAULT].backward))
    for field in (forward, backward):  # identity directions: SimpleITK's determinant is the right one here
        assert sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(field)).min() > 0
    round_trip = sitk.CompositeTransform(3)
    round_trip.AddTransform(sitk.DisplacementFieldTransform(sitk.Image(backward)))
    round_trip.AddTransform(sitk.DisplacementFieldTransform(sitk.Image(forward)))  # applied first
    moved = sitk.TransformToDisplacementField(round_trip, sitk.sitkVectorFloat64, fixed.GetSize(),
                                              fixed.GetOrigin(), fixed.GetSpacing(), fixed.GetDirection())
    assert np.linalg.norm(sitk.GetArrayFromImage(moved), axis=-1)[2:8, 10:30, 10:30].mean() < 0.2


def test_a_whole_image_keeps_the_slices_only(stack_pair):
    fixed, moving, labels, _ = stack_pair
    whole = register_images(fixed, moving, RegistrationParameters(region="whole", iterations=5),
                            moving_labels=labels[1])
    assert whole.report["through_plane"] is None
    assert np.all(sitk.GetArrayFromImage(whole.forward)[..., 2] == 0)


def test_stacks_in_one_batch_never_reach_into_each_other():
    """A cine's phases are stacks one after another along k: each is its own volume of the 3-D batch, and its
    Jacobian is taken on its own (a field moving the two stacks apart would fold where they meet)."""
    layout = TensorLayout("3d", (8, 5, 6), (10.0, 1.0, 1.0), stacks=2)
    array = np.arange(8 * 5 * 6, dtype=np.float32).reshape(8, 5, 6)
    assert np.array_equal(layout.to_tensor(array, torch.device("cpu"))[1, 0].numpy(), array[4:])
    vectors = np.random.default_rng(0).normal(size=(8, 5, 6, 3))
    back = layout.to_voxel_displacement(layout.from_voxel_displacement(vectors, torch.device("cpu")))
    assert np.allclose(back, vectors, atol=1e-5)
    apart = np.zeros((8, 5, 6, 3))
    apart[:4, ..., 2], apart[4:, ..., 2] = 12.0, -12.0  # mm along k: the first stack up, the second down
    field = sitk.GetImageFromArray(apart, isVector=True)
    field.SetSpacing((1.0, 1.0, 10.0))
    assert jacobian_determinant(field).min() < 0  # across the seam, as one volume
    assert np.allclose(stackwise(2, jacobian_determinant, field), 1.0)
