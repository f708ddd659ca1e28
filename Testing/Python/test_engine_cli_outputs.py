"""The command line on a real pair: every output is written, and displacement.nii.gz alone reproduces warped.nii.gz."""
import io
import json
import time

import numpy as np
import pytest
import SimpleITK as sitk

from ODERegistrationLib.cli.main import main
from ODERegistrationLib.cli.progress_bar import ProgressBar
from ODERegistrationLib.engine import Progress

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


def test_the_fields_of_one_slice_volumes_are_read_back_as_volumes_that_reproduce_the_warps(small_2d_pair, tmp_path):
    """A 2-D image saved from Slicer is a volume of one slice. ITK reads a vector NIfTI of one slice as 2-D with 3
    components, which SimpleITK refused to apply to the volume ('number of elements ... same as the dimension')."""
    paths = {}
    for key in ("fixed", "moving"):
        volume = sitk.JoinSeries(small_2d_pair[key])
        volume.SetOrigin(small_2d_pair[key].GetOrigin() + (-42.0,))
        paths[key] = str(tmp_path / f"{key}_one_slice.nii.gz")
        sitk.WriteImage(volume, paths[key])
    output = tmp_path / "out"
    assert main(["register", "--fixed", paths["fixed"], "--moving", paths["moving"], "--output-dir", str(output),
                 "--iterations", "30", "--quiet"]) == 0
    fixed, moving = (sitk.ReadImage(paths[key], sitk.sitkFloat32) for key in ("fixed", "moving"))
    for field_name, source, target, warped_name in (("displacement", moving, fixed, "warped"),
                                                    ("inverse_displacement", fixed, moving, "inverse_warped")):
        field = sitk.ReadImage(str(output / f"{field_name}.nii.gz"), sitk.sitkVectorFloat64)
        assert field.GetDimension() == 3 and field.GetOrigin() == pytest.approx(target.GetOrigin())
        resampled = sitk.Resample(source, target, sitk.DisplacementFieldTransform(field), sitk.sitkLinear, 0.0)
        warped = sitk.ReadImage(str(output / f"{warped_name}.nii.gz"))
        difference = np.abs(sitk.GetArrayFromImage(resampled) - sitk.GetArrayFromImage(warped))
        assert difference.max() < 1e-3 * np.ptp(sitk.GetArrayFromImage(source))


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


def test_parameters_of_a_report_reproduce_the_run_bit_for_bit(run):
    """`--parameters OUT/report.json` starts from exactly that run's parameters (here: 100 iterations, not the
    preset's 250), and on the CPU gives the same field to the last bit."""
    _, folder, output = run
    again = folder / "again"
    assert main(["register", "--fixed", str(folder / "fixed.nii.gz"), "--moving", str(folder / "moving.nii.gz"),
                 "--moving-labels", str(folder / "moving_labels.nii.gz"), "--output-dir", str(again),
                 "--parameters", str(output / "report.json"), "--quiet"]) == 0
    first, second = (json.loads((folder / name / "report.json").read_text()) for name in ("out", "again"))
    assert second["parameters"] == first["parameters"] and second["parameters"]["iterations"] == 100
    fields = [sitk.GetArrayFromImage(sitk.ReadImage(str(folder / name / "displacement.nii.gz")))
              for name in ("out", "again")]
    assert np.array_equal(*fields)


def test_the_panel_and_the_command_line_mean_the_same_by_a_preset(small_2d_pair):
    """The panel applies a preset to its parameter node's engine entries and reads them back (panel.py, on any
    object holding them as attributes, as the parameter node wrapper does); choosing paper there must give the
    CLI's --preset paper, and both runs the same report parameters."""
    import types

    from ODERegistrationLib.cli.main import build_parser, parameters_from_arguments
    from ODERegistrationLib.engine import register_images
    from ODERegistrationLib.engine.parameters import defaults
    from ODERegistrationLib.panel import apply_preset, parameters_from_node

    node = types.SimpleNamespace(**defaults())
    node.iterations, node.folding_weight = 3, 7.0  # what the user had changed before choosing the preset
    apply_preset(node, "paper")
    panel = parameters_from_node(node)
    command_line = parameters_from_arguments(build_parser().parse_args(["demo", "--preset", "paper"]))
    assert panel == command_line
    reports = [register_images(small_2d_pair["fixed"], small_2d_pair["moving"], parameters.replace(iterations=2)).report
               for parameters in (panel, command_line)]
    assert reports[0]["parameters"] == reports[1]["parameters"]


def test_the_qa_picture_shows_both_label_maps_as_contours_and_dice_in_its_title(run):
    """The QA picture used to show no contour at all: the fixed labels are drawn solid green, the propagated ones
    dashed magenta (the moving labels magenta too, on the moving panel)."""
    import matplotlib.image

    _, _, output = run
    pixels = matplotlib.image.imread(str(output / "qa.png"))[..., :3]
    green = np.all(np.abs(pixels - [0.0, 1.0, 0.0]) < 0.15, axis=-1)
    magenta = np.all(np.abs(pixels - [1.0, 0.0, 1.0]) < 0.15, axis=-1)
    columns = pixels.shape[1]
    assert green[:, : columns // 4].sum() > 100  # on the fixed panel, the first of four columns
    assert magenta[:, : columns // 4].sum() > 50 and magenta[:, columns // 4: columns // 2].sum() > 100


def test_the_qa_picture_outlines_the_fitted_region_on_det_j_only(run):
    """det J shows the region's straight edges, where the fitted map meets its fade to the identity; the box is
    drawn there (dashed orange, a colour det J's blue-white-red never takes) so a reader can tell them apart."""
    import matplotlib.colors
    import matplotlib.image

    from ODERegistrationLib.engine.pipeline.qa import REGION_OUTLINE

    _, _, output = run
    pixels = matplotlib.image.imread(str(output / "qa.png"))[..., :3]
    orange = np.all(np.abs(pixels - matplotlib.colors.to_rgb(REGION_OUTLINE)) < 0.15, axis=-1)
    rows, columns = orange.shape
    assert orange[rows // 2:, 3 * columns // 4:].sum() > 100  # the det J panel, last of the second row
    assert orange.sum() == orange[rows // 2:, 3 * columns // 4:].sum()


def test_the_region_outline_follows_the_shown_plane():
    """The report's box is in (i, j, k) order and the panels show array rows and columns: a 2-D image, a stack cut
    across k, a single sagittal slice cut across i; nothing for the whole image or a slice outside the box."""
    from ODERegistrationLib.engine.pipeline.qa import region_outline

    box = {"source": "moving labels", "index_start": [5, 7, 2], "index_size": [20, 30, 4]}
    assert region_outline({**box, "index_start": [5, 7], "index_size": [20, 30]}, 2, None, None) == (4.5, 6.5, 20, 30)
    assert region_outline(box, 3, 0, 3) == (4.5, 6.5, 20, 30)
    assert region_outline(box, 3, 2, 10) == (6.5, 1.5, 30, 4)
    assert region_outline(box, 3, 0, 6) is None
    assert region_outline({**box, "source": "whole image"}, 3, 0, 3) is None


def test_the_qa_picture_of_a_stack_shows_the_slice_its_labels_cover_most():
    """Labels drawn on a few slices of a stack: the picture showed the stack's middle slice, which held none of
    them, so the clinician saw no contour at all. Without labels it shows the middle of the fitted region."""
    from types import SimpleNamespace

    from ODERegistrationLib.engine.pipeline.qa import _shown_slice

    labels = np.zeros((10, 32, 32), np.uint8)
    labels[3, 10:20, 10:20] = 1
    labels[2, 12:14, 12:14] = 2
    region = {"index_start": [0, 0, 6], "index_size": [32, 32, 4]}
    labelled = SimpleNamespace(warped_labels=sitk.GetImageFromArray(labels), report={"region": region})
    assert _shown_slice(labelled, 0)[0] == 3
    assert _shown_slice(SimpleNamespace(warped_labels=None, report={"region": region}), 0)[0] == 8
    assert _shown_slice(labelled, None)[0] is None



def test_the_progress_bar_redraws_a_log_rarely():
    """A log or a pipe keeps every redraw: the terminal's ten a second made one line hundreds of screens wide. Here
    20 iterations over about a second, into a stream that is not a terminal: the bar is drawn when it opens and when
    it closes, with the last iteration."""
    log = io.StringIO()
    with ProgressBar(stream=log) as bar:
        for iteration in range(1, 21):
            bar.update(Progress(iteration, 20, -1.0, (-0.4, -0.6), 0.05 * iteration))
            time.sleep(0.05)
    assert log.getvalue().count("\r") <= 3
    assert "20/20" in log.getvalue()
