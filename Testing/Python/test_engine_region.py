"""Region of interest: placed from labels or a physical box (2-D, 3-D, oblique), refused when it cannot be placed,
and continued outside the box to the identity without folding."""
import json

import numpy as np
import pytest
import SimpleITK as sitk

from ODERegistrationLib.engine import InputError, RegistrationParameters, register_images
from ODERegistrationLib.engine.pipeline.metrics import jacobian_determinant
from ODERegistrationLib.engine.pipeline.region import (MIN_FADE_MM, Region, box_corners, embed_displacement,
                                              region_around_mask, region_from_corners)
from ODERegistrationLib.engine.pipeline import registration
from ODERegistrationLib.engine.pipeline.registration import displacement_image

from conftest import load_pair


@pytest.fixture(scope="module")
def oblique_stack(data_dir):
    """The Sunnybrook 3-D stack: oblique scanner directions, labels on some slices."""
    return load_pair(data_dir, "sunnybrook", "scd_SCD0000101_3d")


def region_from_box_corners(lower_mm, upper_mm, fixed: sitk.Image) -> Region:
    """A box of two opposite corners, as the command line's --roi passes it to the engine."""
    return region_from_corners(box_corners(lower_mm, upper_mm), fixed)


def _label_box(labels: sitk.Image):
    """First and last labelled voxel along each array axis."""
    nonzero = np.nonzero(sitk.GetArrayViewFromImage(labels))
    return [int(axis.min()) for axis in nonzero], [int(axis.max()) for axis in nonzero]


def test_region_from_labels_holds_the_labels_and_the_margin(small_2d_pair):
    labels, fixed = small_2d_pair["moving_labels"], small_2d_pair["fixed"]
    region = region_around_mask(labels, fixed, 25.0, "moving labels")
    first, last = _label_box(labels)
    spacing = fixed.GetSpacing()[::-1]
    for axis, size in enumerate(sitk.GetArrayViewFromImage(fixed).shape):
        margin = int(round(25.0 / spacing[axis]))
        assert region.start[axis] == max(0, first[axis] - margin)
        assert region.stop[axis] == min(size, last[axis] + margin + 1)
    assert not region.is_whole(sitk.GetArrayViewFromImage(fixed).shape)


def test_an_explicit_box_selects_the_same_voxels_as_its_corners(small_2d_pair):
    fixed = small_2d_pair["fixed"]
    lower = fixed.TransformIndexToPhysicalPoint((10, 20))
    upper = fixed.TransformIndexToPhysicalPoint((60, 90))
    region = region_from_box_corners(lower, upper, fixed)
    assert (region.start, region.stop) == ((20, 10), (91, 61))
    description = region.describe(fixed)
    assert description["index_start"] == [10, 20] and description["index_size"] == [51, 71]
    assert np.allclose(description["physical_lower_mm"], np.minimum(lower, upper))


def test_a_box_below_zero_is_taken_by_the_command_line_as_written(small_2d_pair, tmp_path, capsys):
    """LPS corners copied from Slicer usually start with a minus sign, which argparse reads as an option."""
    from ODERegistrationLib.cli.main import main

    for key in ("fixed", "moving"):
        image = sitk.Image(small_2d_pair[key])
        image.SetOrigin((-400.0, -420.0))
        sitk.WriteImage(image, str(tmp_path / f"{key}.nii.gz"))
    fixed = sitk.ReadImage(str(tmp_path / "fixed.nii.gz"))
    lower, upper = fixed.TransformIndexToPhysicalPoint((10, 20)), fixed.TransformIndexToPhysicalPoint((60, 90))
    assert max(lower + upper) < 0
    box = ",".join(f"{value:g}" for value in lower + upper)
    assert main(["register", "--fixed", str(tmp_path / "fixed.nii.gz"), "--moving", str(tmp_path / "moving.nii.gz"),
                 "--output-dir", str(tmp_path / "out"), "--roi", box, "--iterations", "1", "--quiet"]) == 0
    capsys.readouterr()
    region = json.loads((tmp_path / "out" / "report.json").read_text())["region"]
    assert region["index_start"] == [10, 20] and region["index_size"] == [51, 71]


def test_a_box_of_six_numbers_on_a_2d_image_says_it_needs_four(small_2d_pair, tmp_path, capsys):
    """It said "needs at least two 2-D points" of a box of two 3-D points."""
    from ODERegistrationLib.cli.main import main

    for key in ("fixed", "moving"):
        sitk.WriteImage(small_2d_pair[key], str(tmp_path / f"{key}.nii.gz"))
    assert main(["register", "--fixed", str(tmp_path / "fixed.nii.gz"), "--moving", str(tmp_path / "moving.nii.gz"),
                 "--output-dir", str(tmp_path / "out"), "--roi", "0,0,0,10,10,10", "--iterations", "1"]) == 2
    assert capsys.readouterr().err.strip() == ("oderegistration: error: --roi box: needs 2-D corners (4 numbers for "
                                               "a box) for a 2-D image, not 3-D ones")
    assert not (tmp_path / "out").exists()


def test_a_box_beside_the_labels_is_flagged_and_one_around_them_is_not(small_2d_pair):
    """A box typed in RAS instead of LPS lands mirrored, off the heart: the map then leaves the labels where they
    were, and the only word was advice to fit the automatic region, with no reason given."""
    fixed, labels = small_2d_pair["fixed"], small_2d_pair["moving_labels"]
    first, last = _label_box(labels)
    beside = [fixed.TransformIndexToPhysicalPoint((0, 0)), fixed.TransformIndexToPhysicalPoint((8, 8))]
    around = [fixed.TransformIndexToPhysicalPoint((first[1] - 2, first[0] - 2)),
              fixed.TransformIndexToPhysicalPoint((last[1] + 2, last[0] + 2))]
    assert max(first) > 8
    flagged = "region box: holds"
    for corners, expected in ((beside, "holds 0% of moving labels"), (around, None)):
        warnings = register_images(fixed, small_2d_pair["moving"], RegistrationParameters(iterations=2),
                                   moving_labels=labels, region_corners=corners).report["warnings"]
        found = [warning for warning in warnings if flagged in warning]
        assert (expected in found[0]) if expected else not found


def test_on_an_oblique_stack_a_box_of_the_region_s_physical_corners_covers_the_region(oblique_stack):
    """The region's physical extent, given back as a box, covers at least the same voxels (more: the image is
    oblique, so the axis-aligned physical box is larger than the voxel box)."""
    fixed, labels = oblique_stack["fixed"], oblique_stack["moving_labels"]
    direction = np.array(fixed.GetDirection()).reshape(3, 3)
    assert not np.allclose(np.abs(direction), np.eye(3))  # really oblique
    region = region_around_mask(labels, fixed, 10.0, "moving labels")
    description = region.describe(fixed)
    again = region_from_box_corners(description["physical_lower_mm"], description["physical_upper_mm"], fixed)
    assert all(a <= b for a, b in zip(again.start, region.start))
    assert all(a >= b for a, b in zip(again.stop, region.stop))
    centre = fixed.TransformContinuousIndexToPhysicalPoint(
        [(a + b - 1) / 2 for a, b in zip(region.start[::-1], region.stop[::-1])])
    assert np.allclose(centre, (np.array(description["physical_lower_mm"]) + description["physical_upper_mm"]) / 2,
                       atol=0.01)


def test_a_box_that_misses_the_image_is_refused(small_2d_pair):
    fixed = small_2d_pair["fixed"]
    far = np.array(fixed.TransformIndexToPhysicalPoint((0, 0))) - 1000.0
    with pytest.raises(InputError, match="misses the image"):
        region_from_box_corners(far, far + 10.0, fixed)
    with pytest.raises(InputError, match="needs 2-D corners"):
        region_from_box_corners([0.0, 1.0, 2.0], [1.0, 2.0, 3.0], fixed)
    with pytest.raises(InputError, match=r"misses the image \(voxels \[\d.*e\+299"):  # was int64's minimum
        region_from_box_corners([1e300, 1e300], [2e300, 2e300], fixed)
    just_outside = [fixed.TransformContinuousIndexToPhysicalPoint((-0.9, -0.9)),
                    fixed.TransformContinuousIndexToPhysicalPoint((-0.6, -0.6))]
    with pytest.raises(InputError, match=r"misses the image \(voxels \[0, 0\] to \[-1, -1\]"):  # not "-0"
        region_from_box_corners(*just_outside, fixed)


def test_a_box_far_larger_than_the_image_is_the_whole_image(small_2d_pair):
    """Corners at +-1e308 mm overflowed the voxel numbers to int64's minimum: refused as missing the image."""
    fixed = small_2d_pair["fixed"]
    region = region_from_box_corners([-1e308, -1e308], [1e308, 1e308], fixed)
    assert region.start == (0, 0) and region.shape == tuple(fixed.GetSize()[::-1])


def test_masks_that_cannot_be_used_are_refused(small_2d_pair):
    fixed, moving = small_2d_pair["fixed"], small_2d_pair["moving"]
    other_grid = sitk.Image([20, 20], sitk.sitkUInt8) + 1
    with pytest.raises(InputError, match="fixed mask: its grid"):
        register_images(fixed, moving, RegistrationParameters(iterations=1), fixed_mask=other_grid)
    empty = sitk.Image(moving.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(moving)
    with pytest.raises(InputError, match="moving mask: is empty"):
        register_images(fixed, moving, RegistrationParameters(iterations=1), moving_mask=empty)


def test_stack_slices_a_mask_leaves_out_are_flagged(small_2d_pair):
    """A mask drawn on some slices of a stack registered slice by slice: the others compared nothing and stayed at
    the identity without a word."""
    def stack(image, slices=3):
        volume = sitk.JoinSeries([image] * slices)
        volume.SetSpacing(image.GetSpacing() + (10.0,))
        return volume

    fixed, moving = stack(small_2d_pair["fixed"]), stack(small_2d_pair["moving"])
    mask = sitk.GetArrayFromImage(small_2d_pair["fixed_labels"] > 0)[None].repeat(3, axis=0)
    parameters = RegistrationParameters(iterations=2, region="whole", through_plane_sigma_mm=0.0)

    def warnings(mask_array):
        mask_image = sitk.GetImageFromArray(mask_array.astype(np.uint8))
        mask_image.CopyInformation(fixed)
        return register_images(fixed, moving, parameters, fixed_mask=mask_image).report["warnings"]

    assert not any("fixed mask" in warning for warning in warnings(mask))
    partial = mask.copy()
    partial[[0, 2]] = 0
    flagged = [warning for warning in warnings(partial) if warning.startswith("fixed mask")]
    assert len(flagged) == 1 and "slice(s) 0, 2 of the region" in flagged[0]


@pytest.mark.parametrize("blanked", ["fixed", "moving"])
def test_a_region_where_an_image_is_constant_is_refused_before_any_work(small_2d_pair, blanked):
    """A box placed on blank background (or on the part of the grid the moving image does not cover) would give
    NaN intensities once normalized, and the run would be reported as diverging."""
    images = {key: sitk.Image(small_2d_pair[key]) for key in ("fixed", "moving")}
    array = sitk.GetArrayFromImage(images[blanked])
    array[:12, :12] = 0
    images[blanked] = sitk.GetImageFromArray(array)
    images[blanked].CopyInformation(small_2d_pair[blanked])
    corners = [images["fixed"].TransformIndexToPhysicalPoint(index) for index in ((2, 2), (9, 9))]
    with pytest.raises(InputError, match=f"{blanked} image: is constant .* inside the region"):
        register_images(images["fixed"], images["moving"], RegistrationParameters(iterations=1),
                        region_corners=corners)


@pytest.mark.parametrize("mask", ["fixed_mask", "moving_mask"])
def test_a_mask_that_misses_the_region_is_refused_before_any_work(small_2d_pair, mask):
    """It compared no voxel: the similarity stayed constant and the run ended at the identity, with a warning that
    blamed the learning rate."""
    image = small_2d_pair["fixed" if mask == "fixed_mask" else "moving"]
    array = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    array[:8, :8] = 1
    outside = sitk.GetImageFromArray(array)
    outside.CopyInformation(image)
    with pytest.raises(InputError, match=f"{mask.replace('_', ' ')}: has no voxel inside the region"):
        register_images(small_2d_pair["fixed"], small_2d_pair["moving"], RegistrationParameters(iterations=1),
                        moving_labels=small_2d_pair["moving_labels"], **{mask: outside})


def test_the_continuation_outside_the_region_reaches_the_identity_without_folding():
    """A strong displacement up to the box's border (6 voxels = 9 mm, sheared) is faded outside without folding."""
    shape, spacing = (160, 170), (1.5, 1.5)
    region = Region((60, 65), (90, 100), "box")
    rows, columns = np.meshgrid(np.arange(30), np.arange(35), indexing="ij")
    inside = np.stack([6.0 * np.sin(rows / 9.0), 4.0 * np.cos(columns / 7.0)], axis=-1)  # components i, j
    whole, fade_mm = embed_displacement(inside, region, shape, spacing)
    assert np.array_equal(whole[region.slices], inside)
    assert fade_mm >= MIN_FADE_MM and fade_mm >= np.pi * 6.0 * 1.5 - 1e-9
    far = int(np.ceil(fade_mm / 1.5)) + 1
    assert np.abs(whole[:60 - far]).max() == 0 and np.abs(whole[:, 100 + far:]).max() == 0
    assert np.abs(whole[60 - far + 2:60]).max() > 0  # a continuation, not a cut
    reference = sitk.Image([170, 160], sitk.sitkFloat32)
    reference.SetSpacing(spacing)
    assert jacobian_determinant(displacement_image(whole, reference)).min() > 0


def test_cli_fits_the_automatic_region_and_writes_whole_fields_that_fold_nothing(small_2d_pair, tmp_path, capsys):
    from ODERegistrationLib.cli.main import main

    for key, image in small_2d_pair.items():
        sitk.WriteImage(image, str(tmp_path / f"{key}.nii.gz"))
    assert main(["register", "--fixed", str(tmp_path / "fixed.nii.gz"), "--moving", str(tmp_path / "moving.nii.gz"),
                 "--moving-labels", str(tmp_path / "moving_labels.nii.gz"), "--output-dir", str(tmp_path / "out"),
                 "--iterations", "120", "--quiet"]) == 0
    assert "region: moving labels" in capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["region"]["source"].startswith("moving labels") and report["region"]["fade_mm"] >= MIN_FADE_MM
    assert report["folded_voxels"] == 0 and report["inverse_folded_voxels"] == 0
    fixed = small_2d_pair["fixed"]
    for name in ("displacement.nii.gz", "inverse_displacement.nii.gz"):
        field = sitk.ReadImage(str(tmp_path / "out" / name), sitk.sitkVectorFloat64)
        assert field.GetSize() == fixed.GetSize()
        assert jacobian_determinant(field).min() > 0
        corner = sitk.GetArrayFromImage(field)[:3, :3]
        assert np.abs(corner).max() == 0  # far from the heart the map is the identity
    assert report["inverse_consistency_mm"] < 0.5 * fixed.GetSpacing()[0]


def test_a_whole_image_is_fitted_with_its_own_similarity_and_a_region_with_the_other(small_2d_pair, monkeypatch):
    """On the benchmark LNCC gained Dice on whole images and MI + SSIM in a region (docs/benchmarks.md): a fit on
    the whole image must get ``similarity_whole_image``, one in a region ``similarity``."""
    fitted_with = []
    fit = registration.optimize_fields

    def recording_fit(fixed, moving, spacing, parameters, *args, **kwargs):
        fitted_with.append(parameters.similarity)
        return fit(fixed, moving, spacing, parameters, *args, **kwargs)

    monkeypatch.setattr(registration, "optimize_fields", recording_fit)
    parameters = RegistrationParameters(similarity="mse", similarity_whole_image="ssim", iterations=2)
    images = (small_2d_pair["fixed"], small_2d_pair["moving"])
    whole = register_images(*images, parameters.replace(region="whole"))
    in_region = register_images(*images, parameters, moving_labels=small_2d_pair["moving_labels"])
    assert fitted_with == ["ssim", "mse"]
    assert [result.report["parameters"]["similarity"] for result in (whole, in_region)] == ["mse", "mse"]
