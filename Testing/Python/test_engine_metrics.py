"""Metrics against exact answers: direction-aware det J, Dice and Hausdorff on shifted shapes."""
import numpy as np
import pytest
import SimpleITK as sitk

from ODERegistrationLib.engine.pipeline.metrics import folding, jacobian_determinant, label_scores


def oblique_field(function, size=(24, 20, 16), spacing=(0.8, 1.2, 2.5)) -> sitk.Image:
    """A displacement field U(x) = function(x) in physical (LPS) coordinates on an oblique grid."""
    reference = sitk.Image(list(size), sitk.sitkFloat32)
    reference.SetSpacing(spacing)
    reference.SetOrigin((10.0, -5.0, 3.0))
    angle = 0.5
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    reference.SetDirection((rotation @ np.diag([-1, -1, 1])).ravel().tolist())
    k, j, i = np.mgrid[0:size[2], 0:size[1], 0:size[0]]
    index = np.stack([i, j, k], axis=-1).astype(np.float64)
    matrix = np.asarray(reference.GetDirection()).reshape(3, 3) @ np.diag(spacing)
    points = index @ matrix.T + np.asarray(reference.GetOrigin())
    field = sitk.GetImageFromArray(function(points), isVector=True)
    field.CopyInformation(reference)
    return field


def test_jacobian_of_a_linear_map_on_an_oblique_grid():
    linear = np.array([[0.3, 0.1, 0.0], [-0.2, 0.1, 0.05], [0.0, 0.2, -0.4]])
    field = oblique_field(lambda points: points @ linear.T)
    expected = np.linalg.det(np.eye(3) + linear)
    assert np.allclose(jacobian_determinant(field), expected, atol=1e-9)


def test_jacobian_of_a_nonlinear_map_matches_the_analytic_value():
    field = oblique_field(lambda p: np.stack([3 * np.sin(p[..., 1] / 10), 0 * p[..., 0], 0.1 * p[..., 2]], axis=-1))
    determinant = jacobian_determinant(field)
    assert np.allclose(determinant[2:-2, 2:-2, 2:-2], 1.1, atol=1e-3)  # x-shear along y keeps area; z stretches 1.1


def test_folding_counts_non_positive_determinants():
    summary = folding(np.array([[1.0, 0.5], [0.0, -0.2]]))
    assert summary.folded_voxels == 2 and summary.folded_fraction == 0.5 and summary.min_jacobian == pytest.approx(-0.2)


def test_a_non_finite_determinant_counts_as_folded():
    """A NaN det J (a diverged map) used to count as not folded, so such a run reported 0 folded voxels."""
    assert folding(np.array([[1.0, np.nan], [np.inf, 2.0]])).folded_voxels == 2


def test_dice_and_hausdorff_of_shifted_squares():
    reference = np.zeros((40, 40), np.uint8)
    reference[10:20, 10:20] = 1
    candidate = np.roll(reference, 2, axis=1)
    images = []
    for array in (reference, candidate):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((0.5, 0.5))
        images.append(image)
    scores = label_scores(*images, labels=[1, 2])
    assert set(scores) == {1}  # label 2 is in neither image
    assert scores[1].dice == pytest.approx(0.8)
    assert scores[1].hausdorff_mm == pytest.approx(1.0)  # two columns of 0.5 mm


def test_label_missing_from_the_candidate_scores_zero():
    reference = np.zeros((20, 20), np.uint8)
    reference[5:9, 5:9] = 3
    scores = label_scores(sitk.GetImageFromArray(reference), sitk.GetImageFromArray(np.zeros_like(reference)), [3])
    assert scores[3].dice == 0.0 and np.isnan(scores[3].hausdorff_mm)
