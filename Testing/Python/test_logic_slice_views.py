"""What a user sees after a run, drawn by Slicer's own slice logic and displayable managers (slicer-core, offscreen):
the deformation grid bends where the field moves and nowhere else, det J = 1 is white and compression blue, and
the propagated segment is drawn in its own colour where the engine put it."""
import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer")

from ODERegistrationLib.engine import RegistrationParameters  # noqa: E402
from ODERegistrationLib.logic import RegistrationLogic, RegistrationRequest  # noqa: E402
from ODERegistrationLib.logic.geometry import RAS_TO_LPS  # noqa: E402
from ODERegistrationLib.logic.grid_transform import fill_grid_transform  # noqa: E402
from ODERegistrationLib.logic.slice_view import (OffscreenSliceView, render_qa_views, show_grid,  # noqa: E402
                                                 show_segmentation)

from ODERegistrationLib.logic.headless import add_volume  # noqa: E402
from test_logic_registration import add_segmentation  # noqa: E402
from conftest import load_pair, shrink_pair  # noqa: E402


@pytest.fixture
def drawn(mrml, data_dir):
    pair = shrink_pair(load_pair(data_dir, "acdc", "acdc_patient067_2d_mid"), 2)
    fixed, moving = add_volume(mrml.scene, pair["fixed"], "ES"), add_volume(mrml.scene, pair["moving"], "ED")
    segmentation = add_segmentation(mrml.scene, pair["moving_labels"], moving, "ED segmentation")
    outputs = RegistrationLogic(mrml.scene).run(RegistrationRequest(fixed, moving, RegistrationParameters(iterations=80),
                                                                    segmentation))
    view = OffscreenSliceView(mrml.scene, mrml.application_logic, size=(360, 360))
    yield view, fixed, outputs, render_qa_views(view, fixed, outputs)
    view.close()


def pixel_of_lps(view, point_lps):
    return view.pixel_of(np.asarray(point_lps) @ RAS_TO_LPS.T)


def test_the_grid_bends_inside_the_region_and_is_straight_where_the_map_is_the_identity(mrml, drawn):
    view, fixed, outputs, views = drawn
    zero = sitk.GetImageFromArray(np.zeros_like(sitk.GetArrayFromImage(outputs.result.forward)), isVector=True)
    zero.CopyInformation(outputs.result.forward)
    identity = mrml.scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "identity")
    fill_grid_transform(identity, zero)
    view.show(fixed, outputs.warped_volume)
    show_grid(identity)
    straight = view.render()
    show_grid(identity, False)
    plain = view.render()
    assert (np.abs(views["grid"].astype(int) - plain).sum(axis=-1) > 60).mean() > 0.02  # grid lines are drawn
    region = outputs.report["region"]
    field = outputs.result.forward
    (i0, j0), (width, height) = region["index_start"][:2], region["index_size"][:2]
    corners = np.array([pixel_of_lps(view, field.TransformIndexToPhysicalPoint((i, j, 0)))
                        for i in (i0, i0 + width - 1) for j in (j0, j0 + height - 1)])
    (top, left), (bottom, right) = corners.min(axis=0), corners.max(axis=0)
    bent = np.abs(views["grid"].astype(int) - straight).sum(axis=-1) > 60
    assert bent[top:bottom, left:right].mean() > 0.05
    pixels_per_mm = (right - left) / ((width - 1) * field.GetSpacing()[0])
    # Slicer samples each grid line every GridResolutionMm and draws straight segments between the samples, so a
    # segment that starts inside the fade bends up to one sample step beyond it, widened by the line's diameter.
    display = outputs.forward_transform.GetDisplayNode()
    drawn_beyond_mm = display.GetGridResolutionMm() + display.GetGridLineDiameterMm()
    fade = int(np.ceil((region["fade_mm"] + drawn_beyond_mm) * pixels_per_mm)) + 1
    outside = np.ones_like(bent)
    outside[max(top - fade, 0):bottom + fade, max(left - fade, 0):right + fade] = False
    assert outside.sum() > 1000 and not bent[outside].any()


def test_det_j_of_one_is_white_and_compression_blue(drawn):
    """Sampled at voxel centres away from the view's border, the colour Slicer draws for det J."""
    view, fixed, outputs, views = drawn
    jacobian = outputs.result.jacobian
    determinant = sitk.GetArrayFromImage(jacobian)[0]

    def colours(where):
        pixels = [pixel_of_lps(view, jacobian.TransformIndexToPhysicalPoint((int(i), int(j), 0)))
                  for j, i in np.argwhere(where)]
        return np.array([views["jacobian"][row, column] for row, column in pixels], int)

    inner = np.zeros_like(determinant, bool)
    inner[3:-3, 3:-3] = True
    unchanged = colours(inner & (np.abs(determinant - 1.0) < 1e-6))
    assert len(unchanged) > 100 and np.median(unchanged.min(axis=1)) >= 245
    compressed = colours(inner & (determinant < 0.7))
    assert len(compressed) > 5 and np.median(compressed[:, 2] - compressed[:, 0]) > 60


def test_each_propagated_segment_is_drawn_in_its_colour_where_the_engine_put_it(drawn):
    view, fixed, outputs, views = drawn
    segmentation = outputs.propagated_segmentation
    display = segmentation.GetDisplayNode()
    labels = sitk.GetArrayFromImage(outputs.result.warped_labels)[0]
    view.show(fixed)
    show_segmentation(segmentation, False)
    plain = view.render()
    ids = [segmentation.GetSegmentation().GetNthSegmentID(n)
           for n in range(segmentation.GetSegmentation().GetNumberOfSegments())]
    assert (np.abs(views["segmentation"].astype(int) - plain).sum(axis=-1) > 30).mean() > 0.01
    show_segmentation(segmentation)
    for value, segment_id in enumerate(ids, start=1):
        for other in ids:
            display.SetSegmentVisibility(other, other == segment_id)
        changed = np.abs(view.render().astype(int) - plain).sum(axis=-1) > 30
        colour = 255 * np.array(segmentation.GetSegmentation().GetSegment(segment_id).GetColor())
        outline = changed & (np.abs(view.render().astype(int) - colour).max(axis=-1) <= 12)
        assert outline.sum() > 20, segment_id
        rows, columns = np.nonzero(labels == value)
        centre = outputs.result.warped_labels.TransformContinuousIndexToPhysicalPoint(
            (float(columns.mean()), float(rows.mean()), 0.0))
        expected = np.array(pixel_of_lps(view, centre))
        drawn_centre = np.argwhere(changed).mean(axis=0)
        assert np.linalg.norm(drawn_centre - expected) < 0.03 * view.size[0], segment_id
