"""The command line on a real pair: every output is written, and displacement.nii.gz alone reproduces warped.nii.gz."""
import json

import numpy as np
import pytest
import SimpleITK as sitk

from ODERegistrationLib.cli.main import main

REPORT_KEYS = {"seconds", "iterations", "device", "folded_voxels", "folded_fraction", "min_jacobian",
               "inverse_consistency_mm", "labels"}


@pytest.fixture(scope="module")
def run(small_2d_pair, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    for key, image in small_2d_pair.items():
        sitk.WriteImage(image, str(folder / f"{key}.nii.gz"))
    output = folder / "out"
    code = main(["register", "--fixed", str(folder / "fixed.nii.gz"), "--moving", str(folder / "moving.nii.gz"),
                 "--moving-labels", str(folder / "moving_labels.nii.gz"),
                 "--fixed-labels", str(folder / "fixed_labels.nii.gz"),
                 "--output-dir", str(output), "--iterations", "100", "--quiet"])
    return code, folder, output


def test_writes_every_output(run):
    code, _, output = run
    assert code == 0
    names = {path.name for path in output.iterdir()}
    assert names == {"displacement.nii.gz", "inverse_displacement.nii.gz", "warped.nii.gz", "inverse_warped.nii.gz",
                     "jacobian.nii.gz", "warped_labels.nii.gz", "qa.png", "report.json"}
    report = json.loads((output / "report.json").read_text())
    assert REPORT_KEYS <= set(report)
    assert set(report["labels"]["1"]["after"]) == {"dice", "hausdorff_mm", "hausdorff95_mm"}
    assert (output / "qa.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_displacement_file_alone_reproduces_the_warped_image(run):
    _, folder, output = run
    moving = sitk.ReadImage(str(folder / "moving.nii.gz"), sitk.sitkFloat32)
    fixed = sitk.ReadImage(str(folder / "fixed.nii.gz"))
    field = sitk.ReadImage(str(output / "displacement.nii.gz"), sitk.sitkVectorFloat64)
    resampled = sitk.Resample(moving, fixed, sitk.DisplacementFieldTransform(field), sitk.sitkLinear, 0.0)
    warped = sitk.ReadImage(str(output / "warped.nii.gz"))
    difference = np.abs(sitk.GetArrayFromImage(resampled) - sitk.GetArrayFromImage(warped))
    assert difference.max() < 1e-3 * np.ptp(sitk.GetArrayFromImage(moving))


def test_inverse_displacement_maps_moving_points_back_to_fixed_points(run):
    _, _, output = run
    forward = sitk.DisplacementFieldTransform(sitk.ReadImage(str(output / "displacement.nii.gz"), sitk.sitkVectorFloat64))
    backward = sitk.DisplacementFieldTransform(
        sitk.ReadImage(str(output / "inverse_displacement.nii.gz"), sitk.sitkVectorFloat64))
    field = sitk.ReadImage(str(output / "displacement.nii.gz"))
    size = field.GetSize()
    errors = []
    for i in range(size[0] // 4, 3 * size[0] // 4, 5):  # the central region, where the heart moves
        for j in range(size[1] // 4, 3 * size[1] // 4, 5):
            point = field.TransformIndexToPhysicalPoint((i, j))
            errors.append(np.linalg.norm(np.subtract(backward.TransformPoint(forward.TransformPoint(point)), point)))
    assert np.mean(errors) < 0.6 * field.GetSpacing()[0]  # sub-voxel after only 100 iterations


def test_demo_registers_the_built_in_sample(tmp_path):
    assert main(["demo", "--output-dir", str(tmp_path / "demo"), "--iterations", "2", "--quiet"]) == 0
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["iterations"] == 2 and "1" in report["labels"]
