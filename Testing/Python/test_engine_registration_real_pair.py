"""On a real cardiac ES/ED pair: labels propagate better than unregistered, no folding, inverse consistency."""
import numpy as np
import pytest
import SimpleITK as sitk

from ODERegistrationLib.engine import RegistrationParameters, register_images

FAST = RegistrationParameters(iterations=150)


@pytest.fixture(scope="module")
def result(small_2d_pair):
    return register_images(small_2d_pair["fixed"], small_2d_pair["moving"], FAST,
                           moving_labels=small_2d_pair["moving_labels"], fixed_labels=small_2d_pair["fixed_labels"])


def test_dice_improves_for_every_structure(result):
    labels = result.report["labels"]
    assert set(labels) == {"1", "2", "3"}
    before = np.mean([scores["before"]["dice"] for scores in labels.values()])
    after = np.mean([scores["after"]["dice"] for scores in labels.values()])
    assert after > before + 0.03, labels
    for scores in labels.values():
        assert scores["after"]["dice"] > scores["before"]["dice"] - 0.01


def test_no_folding(result):
    assert result.report["folded_voxels"] == 0
    assert result.report["min_jacobian"] > 0


def test_forward_and_backward_maps_are_inverse(result):
    spacing = result.forward.GetSpacing()[0]
    assert result.report["inverse_consistency_mm"] < spacing  # mean round trip under one voxel (3.125 mm here)
    fields = [sitk.GetArrayFromImage(image) for image in (result.forward, result.backward)]
    assert np.abs(fields[0]).max() > 0.5  # the maps really moved something


def test_outputs_live_on_the_fixed_grid(result, small_2d_pair):
    fixed = small_2d_pair["fixed"]
    for image in (result.forward, result.backward, result.warped, result.jacobian, result.warped_labels):
        assert image.GetSize() == fixed.GetSize()
        assert np.allclose(image.GetOrigin(), fixed.GetOrigin())
        assert np.allclose(image.GetSpacing(), fixed.GetSpacing())
        assert np.allclose(image.GetDirection(), fixed.GetDirection())
    assert result.inverse_warped.GetSize() == small_2d_pair["moving"].GetSize()


def test_same_seed_gives_the_same_result_on_cpu(small_2d_pair):
    quick = RegistrationParameters(iterations=5, device="cpu", seed=3)
    first, second = (sitk.GetArrayFromImage(register_images(small_2d_pair["fixed"], small_2d_pair["moving"], quick).forward)
                     for _ in range(2))
    assert np.array_equal(first, second)
