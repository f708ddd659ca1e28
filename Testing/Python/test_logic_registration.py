"""The Logic on real MRML (slicer-core): transform, warped volume, Jacobian and propagated segmentation agree with
the engine and with independent readers (SimpleITK, MRML resampling); inputs are never changed; Cancel is clean."""
import json
import os

import numpy as np
import torch
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer")
import vtk  # noqa: E402

from ODERegistrationLib.engine import DeviceError, InputError, RegistrationParameters, register_images  # noqa: E402
from ODERegistrationLib.engine.pipeline.metrics import label_scores  # noqa: E402
from ODERegistrationLib.logic import RegistrationLogic, OutputRequest, RegistrationRequest  # noqa: E402
from ODERegistrationLib.logic.geometry import image_from_volume  # noqa: E402
from ODERegistrationLib.logic.headless import add_volume  # noqa: E402
from ODERegistrationLib.logic.segmentations import labels_from_segmentation  # noqa: E402

from conftest import grid_points, load_pair, shrink_pair, transform_point_difference  # noqa: E402

SEGMENT_NAMES = {1: "RV cavity", 2: "LV myocardium", 3: "LV cavity"}


def add_segmentation(scene, labels, reference, name):
    labelmap = add_volume(scene, labels, name + " labels", "vtkMRMLLabelMapVolumeNode")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(reference)
    slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation)
    for index in range(segmentation.GetSegmentation().GetNumberOfSegments()):
        segment = segmentation.GetSegmentation().GetNthSegment(index)
        segment.SetName(SEGMENT_NAMES.get(index + 1, segment.GetName()))
        segment.SetColor(0.1 * (index + 1), 0.5, 0.9 - 0.2 * index)
    scene.RemoveNode(labelmap.GetDisplayNode())
    scene.RemoveNode(labelmap)
    return segmentation


REPRESENTATIONS = ("Binary labelmap", "Closed surface", "Planar contour", "Fractional labelmap")


def input_state(nodes):
    """Each input's identity, name, parent transform, storage node, voxels, and segments with the representations
    they hold."""
    state = []
    for node in nodes:
        content = None
        if node.IsA("vtkMRMLVolumeNode"):
            content = np.array(slicer.util.arrayFromVolume(node), copy=True)
        elif node.IsA("vtkMRMLSegmentationNode"):
            segmentation = node.GetSegmentation()
            content = [segmentation.GetSourceRepresentationName()] + [
                (segment.GetName(), [name for name in REPRESENTATIONS if segment.GetRepresentation(name) is not None])
                for segment in map(segmentation.GetNthSegment, range(segmentation.GetNumberOfSegments()))]
        state.append((node.GetID(), node.GetName(), node.GetTransformNodeID(), node.GetStorageNodeID(), content))
    return state


def assert_unchanged(before, after):
    assert len(before) == len(after)
    for old, new in zip(before, after):
        assert old[:4] == new[:4]
        assert np.array_equal(old[4], new[4]) if isinstance(old[4], np.ndarray) else old[4] == new[4]


@pytest.fixture
def cardiac_2d(mrml, data_dir):
    pair = shrink_pair(load_pair(data_dir, "acdc", "acdc_patient067_2d_mid"), 2)
    fixed = add_volume(mrml.scene, pair["fixed"], "ES")
    moving = add_volume(mrml.scene, pair["moving"], "ED")
    return {"fixed": fixed, "moving": moving,
            "moving_segmentation": add_segmentation(mrml.scene, pair["moving_labels"], moving, "ED segmentation"),
            "fixed_segmentation": add_segmentation(mrml.scene, pair["fixed_labels"], fixed, "ES segmentation")}


def test_2d_outputs_agree_with_engine_and_independent_readers(mrml, cardiac_2d):
    fixed, moving = cardiac_2d["fixed"], cardiac_2d["moving"]
    inputs = [fixed, moving, cardiac_2d["moving_segmentation"], cardiac_2d["fixed_segmentation"]]
    before = input_state(inputs)
    request = RegistrationRequest(fixed, moving, RegistrationParameters(iterations=60),
                                  cardiac_2d["moving_segmentation"], cardiac_2d["fixed_segmentation"])
    outputs = RegistrationLogic(mrml.scene).run(request)

    assert_unchanged(before, input_state(inputs))
    # the transform maps points like the engine's displacement read by SimpleITK
    assert transform_point_difference(outputs.forward_transform, outputs.result.forward, grid_points(fixed)) < 1e-3
    assert transform_point_difference(outputs.inverse_transform, outputs.result.backward, grid_points(fixed)) < 1e-3
    # MRML resampling of the moving volume through the transform reproduces the engine's warped image
    moving.SetAndObserveTransformNodeID(outputs.forward_transform.GetID())
    resampled = slicer.vtkSlicerVolumesLogic.ResampleVolumeToReferenceVolume(moving, fixed)
    moving.SetAndObserveTransformNodeID(None)
    difference = np.abs(slicer.util.arrayFromVolume(resampled) - slicer.util.arrayFromVolume(outputs.warped_volume))
    assert difference.max() < 1e-2 * np.ptp(slicer.util.arrayFromVolume(moving))
    # the Jacobian volume has the fixed geometry and its own diverging colour table
    for node in (outputs.warped_volume, outputs.jacobian_volume):
        assert np.allclose(slicer.util.arrayFromVTKMatrix(_ijk_to_ras(node)), slicer.util.arrayFromVTKMatrix(_ijk_to_ras(fixed)))
    assert outputs.jacobian_volume.GetDisplayNode().GetColorNode().IsA("vtkMRMLProceduralColorNode")
    assert outputs.report["folded_voxels"] == 0
    # the propagated segmentation keeps names and colours and scores the engine's Dice
    propagated = outputs.propagated_segmentation
    source = cardiac_2d["moving_segmentation"].GetSegmentation()
    for index in range(source.GetNumberOfSegments()):
        copy = propagated.GetSegmentation().GetNthSegment(index)
        assert copy.GetName() == source.GetNthSegment(index).GetName()
        assert np.allclose(copy.GetColor(), source.GetNthSegment(index).GetColor())
    propagated_labels = labels_from_segmentation(propagated, fixed)
    fixed_labels = labels_from_segmentation(cardiac_2d["fixed_segmentation"], fixed)
    scores = label_scores(fixed_labels, propagated_labels, [1, 2, 3])
    for label, score in scores.items():
        engine = outputs.report["labels"][str(label)]["after"]["dice"]
        assert score.dice == pytest.approx(engine, abs=1e-6)
        assert engine > outputs.report["labels"][str(label)]["before"]["dice"]
    assert outputs.segment_names == {"1": "RV cavity", "2": "LV myocardium", "3": "LV cavity"}


def labels_from_segmentation_array(segmentation, reference):
    return sitk.GetArrayFromImage(labels_from_segmentation(segmentation, reference))


def test_a_segmentation_drawn_as_a_closed_surface_is_propagated_and_left_as_it_was(mrml, cardiac_2d):
    """A segmentation whose source is a closed surface (made from a model, say) has no voxels until converted. It
    is propagated all the same, and the user's node keeps its one representation: exporting it in place used to
    add a binary labelmap to it."""
    fixed, moving = cardiac_2d["fixed"], cardiac_2d["moving"]
    lv_cavity = labels_from_segmentation_array(cardiac_2d["moving_segmentation"], moving) == 3
    centre_ijk = list(np.argwhere(lv_cavity).mean(axis=0)[::-1]) + [0] * (4 - lv_cavity.ndim)
    centre_ijk[3] = 1
    ijk_to_ras = slicer.util.arrayFromVTKMatrix(_ijk_to_ras(moving))
    sphere = vtk.vtkSphereSource()
    sphere.SetCenter(*(ijk_to_ras @ centre_ijk)[:3])
    sphere.SetRadius(20)
    sphere.SetThetaResolution(64)
    sphere.SetPhiResolution(64)
    sphere.Update()
    model = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "LV model")
    model.GetSegmentation().SetSourceRepresentationName("Closed surface")
    model.AddSegmentFromClosedSurfaceRepresentation(sphere.GetOutput(), "LV cavity", [1, 0, 0])
    before = input_state([model])

    outputs = RegistrationLogic(mrml.scene).run(
        RegistrationRequest(fixed, moving, RegistrationParameters(iterations=20), model))

    assert_unchanged(before, input_state([model]))
    assert before[0][4] == ["Closed surface", ("LV cavity", ["Closed surface"])]
    disc = labels_from_segmentation_array(model, moving)
    pixel_mm2 = moving.GetSpacing()[0] * moving.GetSpacing()[1]
    assert disc.sum() * pixel_mm2 == pytest.approx(np.pi * 20 ** 2, rel=0.1)  # the sphere's cut through the slice
    propagated = labels_from_segmentation_array(outputs.propagated_segmentation, fixed)
    assert propagated.any() and np.array_equal(propagated, sitk.GetArrayFromImage(outputs.result.warped_labels))


def _ijk_to_ras(node):
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return matrix


def test_oblique_3d_stack_transform_matches_engine(mrml, data_dir):
    pair = shrink_pair(load_pair(data_dir, "sunnybrook", "scd_SCD0000101_3d"), 4)
    fixed = add_volume(mrml.scene, pair["fixed"], "ES")
    moving = add_volume(mrml.scene, pair["moving"], "ED")
    direction = np.asarray(pair["fixed"].GetDirection()).reshape(3, 3)
    assert np.abs(direction - np.diag(np.diag(direction))).max() > 0.3  # really oblique
    outputs = RegistrationLogic(mrml.scene).run(
        RegistrationRequest(fixed, moving, RegistrationParameters(iterations=8, mode="slices")),
        OutputRequest(inverse_transform=None, jacobian_volume=None))
    assert outputs.report["mode"] == "slices"
    assert outputs.inverse_transform is None and outputs.jacobian_volume is None
    assert transform_point_difference(outputs.forward_transform, outputs.result.forward, grid_points(fixed, 9)) < 1e-3
    moving.SetAndObserveTransformNodeID(outputs.forward_transform.GetID())
    resampled = slicer.vtkSlicerVolumesLogic.ResampleVolumeToReferenceVolume(moving, fixed)
    moving.SetAndObserveTransformNodeID(None)
    difference = np.abs(slicer.util.arrayFromVolume(resampled) - slicer.util.arrayFromVolume(outputs.warped_volume))
    assert np.median(difference) < 1e-3 * np.ptp(slicer.util.arrayFromVolume(moving))


def test_initial_linear_transform_of_the_moving_volume_is_honoured(mrml, cardiac_2d):
    moving = cardiac_2d["moving"]
    shift = mrml.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "initial alignment")
    matrix = np.eye(4)
    matrix[:3, 3] = [12.0, -7.0, 0.0]
    shift.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(matrix))
    plain_origin = np.array(image_from_volume(moving).GetOrigin())
    moving.SetAndObserveTransformNodeID(shift.GetID())
    shifted_origin = np.array(image_from_volume(moving).GetOrigin())
    assert np.allclose(shifted_origin - plain_origin, [-12.0, 7.0, 0.0])  # RAS shift seen in LPS
    outputs = RegistrationLogic(mrml.scene).run(
        RegistrationRequest(cardiac_2d["fixed"], moving, RegistrationParameters(iterations=2)))
    assert moving.GetTransformNodeID() == shift.GetID()  # the input keeps its transform
    assert outputs.warped_volume.GetTransformNodeID() is None


def test_non_linear_parent_transform_is_refused(mrml, cardiac_2d):
    outputs = RegistrationLogic(mrml.scene).run(
        RegistrationRequest(cardiac_2d["fixed"], cardiac_2d["moving"], RegistrationParameters(iterations=1)),
        OutputRequest(inverse_transform=None, warped_volume=None, jacobian_volume=None, propagated_segmentation=None))
    cardiac_2d["moving"].SetAndObserveTransformNodeID(outputs.forward_transform.GetID())
    with pytest.raises(InputError, match="non-linear"):
        RegistrationLogic(mrml.scene).prepare(RegistrationRequest(cardiac_2d["fixed"], cardiac_2d["moving"]))


def test_cancel_leaves_the_scene_unchanged(mrml, cardiac_2d):
    inputs = list(cardiac_2d.values())
    before, node_count = input_state(inputs), mrml.scene.GetNumberOfNodes()
    logic = RegistrationLogic(mrml.scene)
    request = RegistrationRequest(cardiac_2d["fixed"], cardiac_2d["moving"], RegistrationParameters(iterations=10_000),
                                  cardiac_2d["moving_segmentation"])
    run = logic.start(request)
    while not run.job.poll():  # wait until it really iterates
        run.job.wait(0.05)
    run.job.cancel()
    run.job.wait(30)
    assert not run.job.running and run.job.cancelled
    assert logic.finish(run) is None
    assert_unchanged(before, input_state(inputs))
    assert mrml.scene.GetNumberOfNodes() == node_count


@pytest.mark.parametrize("warp_moving", [True, False])
def test_the_warped_volume_is_resampled_on_the_worker_only_when_asked(mrml, cardiac_2d, warp_moving):
    """The worker thread resamples the warped image when a warped volume is requested, so that filling the node on
    the main thread does not freeze the GUI; without one it is never made."""
    inputs = RegistrationLogic(mrml.scene).prepare(RegistrationRequest(
        cardiac_2d["fixed"], cardiac_2d["moving"], RegistrationParameters(iterations=2)))
    result = inputs.task(warp_moving)(lambda update: None, lambda: False)
    assert ("warped" in vars(result)) == warp_moving


@pytest.mark.parametrize("output, given", [("warped_volume", "moving"), ("jacobian_volume", "fixed"),
                                           ("propagated_segmentation", "moving_segmentation")])
def test_an_input_chosen_as_an_output_is_refused_before_it_is_overwritten(mrml, cardiac_2d, output, given):
    inputs = list(cardiac_2d.values())
    before, node_count = input_state(inputs), mrml.scene.GetNumberOfNodes()
    request = RegistrationRequest(cardiac_2d["fixed"], cardiac_2d["moving"], RegistrationParameters(iterations=2),
                                  cardiac_2d["moving_segmentation"])
    with pytest.raises(InputError, match=f"{output.replace('_', ' ')} output: is the .*{cardiac_2d[given].GetName()}"):
        RegistrationLogic(mrml.scene).run(request, OutputRequest(**{output: cardiac_2d[given]}))
    assert_unchanged(before, input_state(inputs))
    assert mrml.scene.GetNumberOfNodes() == node_count


def test_one_node_chosen_for_two_outputs_is_refused_before_the_run(mrml, cardiac_2d):
    """The panel lets the same volume be picked as the warped volume and the det J map: the map overwrote the
    warped volume after the run, and the forward transform was lost under the inverse likewise."""
    request = RegistrationRequest(cardiac_2d["fixed"], cardiac_2d["moving"], RegistrationParameters(iterations=2))
    for output_class, first, second in (("vtkMRMLScalarVolumeNode", "warped_volume", "jacobian_volume"),
                                        ("vtkMRMLGridTransformNode", "forward_transform", "inverse_transform")):
        shared = mrml.scene.AddNewNodeByClass(output_class, "chosen twice")
        node_count = mrml.scene.GetNumberOfNodes()
        with pytest.raises(InputError, match=f"{second.replace('_', ' ')} output: is 'chosen twice', chosen for "
                                             f"the {first.replace('_', ' ')} output too"):
            RegistrationLogic(mrml.scene).run(request, OutputRequest(**{first: shared, second: shared}))
        assert mrml.scene.GetNumberOfNodes() == node_count


def test_a_segmentation_without_segments_is_a_clear_error(mrml, cardiac_2d):
    """It failed inside the label map export with an AttributeError (no image data) after VTK errors."""
    empty = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "nothing drawn")
    empty.SetReferenceImageGeometryParameterFromVolumeNode(cardiac_2d["moving"])
    node_count = mrml.scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="nothing drawn: has no segments"):
        RegistrationLogic(mrml.scene).prepare(RegistrationRequest(cardiac_2d["fixed"], cardiac_2d["moving"],
                                                                  moving_segmentation=empty))
    assert mrml.scene.GetNumberOfNodes() == node_count


def test_a_segmentation_outside_its_volume_is_named_as_such(mrml, cardiac_2d):
    """Segments drawn on another volume, away from this one: the label map came out empty and the engine said the
    labels were 'empty', with segments plainly in the segmentation."""
    labels = image_from_volume(cardiac_2d["moving"]) > 0
    labels.SetOrigin([value + 500.0 for value in labels.GetOrigin()])
    elsewhere = add_segmentation(mrml.scene, labels, cardiac_2d["moving"], "drawn elsewhere")
    with pytest.raises(InputError, match="drawn elsewhere: none of its segments covers a voxel of ED"):
        RegistrationLogic(mrml.scene).prepare(RegistrationRequest(cardiac_2d["fixed"], cardiac_2d["moving"],
                                                                  moving_segmentation=elsewhere))


def add_segment_around(segmentation, volume, name):
    """A segment holding every other segment's voxels, as an epicardium drawn around its cavity."""
    segments = segmentation.GetSegmentation()
    union = sum(slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segments.GetNthSegmentID(index), volume)
                for index in range(segments.GetNumberOfSegments())) > 0
    segment_id = segments.AddEmptySegment(name, name)
    slicer.util.updateSegmentBinaryLabelmapFromArray(union.astype(np.uint8), segmentation, segment_id, volume)


def test_overlapping_segments_are_refused_as_labels_and_taken_as_a_mask(mrml, cardiac_2d):
    """One label map carries one segment per voxel: the segment that shared its voxels came back as a ring (1643
    voxels of ACDC 067's LV drawn around its cavity were propagated as 586), with no word. As a mask only the
    union counts, so there overlap is fine."""
    moving, segmentation = cardiac_2d["moving"], cardiac_2d["moving_segmentation"]
    add_segment_around(segmentation, moving, "heart")
    segmentation.GetSegmentation().SetSegmentIndex("heart", 0)
    before = input_state([segmentation])
    node_count = mrml.scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="ED segmentation: segments 'heart' and 'RV cavity' overlap"):
        RegistrationLogic(mrml.scene).prepare(RegistrationRequest(cardiac_2d["fixed"], moving,
                                                                  moving_segmentation=segmentation))
    assert mrml.scene.GetNumberOfNodes() == node_count
    assert_unchanged(before, input_state([segmentation]))
    inputs = RegistrationLogic(mrml.scene).prepare(RegistrationRequest(cardiac_2d["fixed"], moving,
                                                                       moving_mask=segmentation))
    assert sitk.GetArrayViewFromImage(inputs.moving_mask).astype(bool).sum() == \
        slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, "heart", moving).sum()


def test_a_fixed_segmentation_with_no_segment_named_like_a_moving_one_is_a_clear_error(mrml, cardiac_2d):
    """Segments are paired by name for scoring; with no pair the run gave no score and no word."""
    fixed_segmentation = cardiac_2d["fixed_segmentation"].GetSegmentation()
    for index in range(fixed_segmentation.GetNumberOfSegments()):
        fixed_segmentation.GetNthSegment(index).SetName(f"structure {index}")
    with pytest.raises(InputError, match="ES segmentation: none of its segments is named like a segment"):
        RegistrationLogic(mrml.scene).prepare(RegistrationRequest(
            cardiac_2d["fixed"], cardiac_2d["moving"], moving_segmentation=cardiac_2d["moving_segmentation"],
            fixed_segmentation=cardiac_2d["fixed_segmentation"]))


def test_missing_volume_is_a_clear_error(mrml, cardiac_2d):
    with pytest.raises(InputError, match="fixed and a moving"):
        RegistrationLogic(mrml.scene).prepare(RegistrationRequest(cardiac_2d["fixed"], None))


def test_one_volume_chosen_as_fixed_and_moving_is_a_clear_error_and_adds_nothing(mrml, cardiac_2d):
    """The slip of choosing ES twice in the panel ran a whole fit to the identity and advised a higher rate."""
    nodes_before = mrml.scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="^ES: is the same image as ES"):
        RegistrationLogic(mrml.scene).run(RegistrationRequest(cardiac_2d["fixed"], cardiac_2d["fixed"]))
    assert mrml.scene.GetNumberOfNodes() == nodes_before


@pytest.mark.parametrize("image_data", [None, vtk.vtkImageData()], ids=["no image data", "image data without voxels"])
def test_a_volume_without_voxels_is_a_clear_error(mrml, cardiac_2d, image_data):
    """A volume node whose loading failed or has not finished: one sentence naming it, not an AttributeError from
    reading its missing scalars."""
    empty = mrml.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Unloaded")
    empty.SetAndObserveImageData(image_data)
    with pytest.raises(InputError, match="Unloaded: has no image data"):
        RegistrationLogic(mrml.scene).prepare(RegistrationRequest(cardiac_2d["fixed"], empty))


def test_a_volume_with_a_voxel_size_of_zero_is_a_clear_error(mrml, cardiac_2d):
    """The Volumes module lets a spacing be typed as 0; SimpleITK then raised from deep inside the image copy."""
    cardiac_2d["moving"].SetSpacing(1.5, 0.0, 1.0)
    with pytest.raises(InputError, match=r"ED: its voxel size is \[1.5, 0.0, 1.0\] mm"):
        RegistrationLogic(mrml.scene).prepare(RegistrationRequest(cardiac_2d["fixed"], cardiac_2d["moving"]))


def test_an_roi_never_placed_is_a_clear_error(mrml, cardiac_2d):
    """A new ROI node has no position until placed in a view: its box was a point at the origin, reported as a
    region that misses the image."""
    unplaced = mrml.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "heart box")
    with pytest.raises(InputError, match="heart box: is not placed yet"):
        RegistrationLogic(mrml.scene).prepare(RegistrationRequest(cardiac_2d["fixed"], cardiac_2d["moving"],
                                                                  region_roi=unplaced))


def test_the_engines_advice_names_the_panels_settings_not_command_line_options(mrml, cardiac_2d):
    """The engine words its advice for the command line ("--threads 0", "use --device cpu"), whose options the
    panel's user never sees; the Logic's warnings and errors name the panel's settings instead."""
    logic = RegistrationLogic(mrml.scene)
    transform_only = OutputRequest(inverse_transform=None, warped_volume=None, jacobian_volume=None,
                                   propagated_segmentation=None)
    too_many_threads = RegistrationParameters(iterations=1, device="cpu", threads=(os.cpu_count() or 1) + 1)
    outputs = logic.run(RegistrationRequest(cardiac_2d["fixed"], cardiac_2d["moving"], too_many_threads),
                        transform_only)
    assert any("(CPU threads = 0 uses every core)" in warning for warning in outputs.warnings)
    assert any("(--threads 0 uses every core)" in warning for warning in outputs.report["warnings"])
    assert not any("--" in warning for warning in outputs.warnings)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match=r"use Device = cpu$"):
            logic.run(RegistrationRequest(cardiac_2d["fixed"], cardiac_2d["moving"],
                                          RegistrationParameters(iterations=1, device="cuda")), transform_only)


def save_segmentation(scene, segmentation, path) -> str:
    """The segmentation as Slicer's own storage node writes it (File > Save: a .seg.nrrd)."""
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    assert storage.WriteData(segmentation)
    return str(path)


def test_the_command_line_reads_segmentations_as_slicer_saves_them(mrml, cardiac_2d, small_2d_pair, tmp_path,
                                                                    capsys):
    """A 2-D image's segmentation saved by Slicer is a volume of one slice (refused as 'not a scalar 2-D label
    map'); its segments' names are kept for the summary and the report; overlapping segments, which Slicer saves
    as one layer each, are a mask's union and no label map."""
    from ODERegistrationLib.cli.main import main

    files = {key: str(tmp_path / f"{key}.nii.gz") for key in small_2d_pair}
    for key, image in small_2d_pair.items():
        sitk.WriteImage(image, files[key])
    saved = save_segmentation(mrml.scene, cardiac_2d["moving_segmentation"], tmp_path / "ED.seg.nrrd")

    def register(output, *options):
        code = main(["register", "--fixed", files["fixed"], "--moving", files["moving"], "--output-dir",
                     str(tmp_path / output), "--iterations", "20", "--quiet", *options])
        return code, capsys.readouterr()

    scored = ["--fixed-labels", files["fixed_labels"]]
    assert register("labels", "--moving-labels", files["moving_labels"], *scored)[0] == 0
    code, printed = register("segmentation", "--moving-labels", saved, *scored)
    assert code == 0
    assert np.array_equal(*(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / output / "warped_labels.nii.gz")))
                            for output in ("labels", "segmentation")))
    report = json.loads((tmp_path / "segmentation" / "report.json").read_text())
    assert {label: scores["name"] for label, scores in report["labels"].items()} == {
        str(value): name for value, name in SEGMENT_NAMES.items()}
    assert "label 1 (RV cavity): Dice" in printed.out

    labelled = sitk.GetArrayFromImage(small_2d_pair["moving_labels"]) > 0
    shifted = np.roll(labelled, 20, axis=1)  # overlaps the labels, so Slicer saves it in a layer of its own
    segmentation = cardiac_2d["moving_segmentation"]
    slicer.util.updateSegmentBinaryLabelmapFromArray(
        shifted[None].astype(np.uint8), segmentation, segmentation.GetSegmentation().AddEmptySegment("shifted"),
        cardiac_2d["moving"])
    overlapping = save_segmentation(mrml.scene, segmentation, tmp_path / "ED2.seg.nrrd")
    code, printed = register("refused", "--moving-labels", overlapping)
    assert code == 2 and not (tmp_path / "refused").exists()
    assert printed.err.strip().count("\n") == 0 and "segments overlap (2 layers)" in printed.err
    union = sitk.GetImageFromArray((labelled | shifted).astype(np.uint8))
    union.CopyInformation(small_2d_pair["moving_labels"])
    sitk.WriteImage(union, str(tmp_path / "union.nii.gz"))
    regions = []
    for output, mask in (("mask", str(tmp_path / "union.nii.gz")), ("union", overlapping)):
        code, printed = register(output, "--moving-mask", mask)
        assert code == 0, printed.err
        regions.append(json.loads((tmp_path / output / "report.json").read_text())["region"])
    assert regions[1]["index_start"] == regions[0]["index_start"]
    assert regions[1]["index_size"] == regions[0]["index_size"]


@pytest.mark.parametrize("segments", [[], ["not drawn yet"]], ids=["no segment", "an empty segment"])
def test_the_command_line_names_a_segmentation_saved_with_nothing_drawn(mrml, cardiac_2d, small_2d_pair, tmp_path,
                                                                       capsys, segments):
    """Slicer saves a segmentation with nothing drawn as one empty voxel, which was refused as 'its grid (size
    (1, 1), spacing (1.0, 1.0)) differs from the grid of moving': the wrong thing to fix."""
    from ODERegistrationLib.cli.main import main

    files = {key: str(tmp_path / f"{key}.nii.gz") for key in ("fixed", "moving")}
    for key in files:
        sitk.WriteImage(small_2d_pair[key], files[key])
    empty = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "nothing drawn")
    empty.SetReferenceImageGeometryParameterFromVolumeNode(cardiac_2d["moving"])
    for name in segments:
        empty.GetSegmentation().AddEmptySegment(name)
    saved = save_segmentation(mrml.scene, empty, tmp_path / "empty.seg.nrrd")
    for option in ("--moving-labels", "--moving-mask"):
        assert main(["register", "--fixed", files["fixed"], "--moving", files["moving"], option, saved,
                     "--output-dir", str(tmp_path / "out")]) == 2
        message = capsys.readouterr().err
        assert "is a Slicer segmentation with no segment drawn" in message and message.strip().count("\n") == 0
        assert not (tmp_path / "out").exists()


def test_roi_node_selects_the_same_voxels_as_the_engine_on_the_oblique_stack(mrml, data_dir):
    """An ROI node made from a voxel box of the oblique stack (as Slicer aligns an ROI to a volume) maps back to
    exactly that box; the region the run used is shown as an ROI node over the same voxels."""
    from ODERegistrationLib.engine.pipeline.region import region_from_corners
    from ODERegistrationLib.logic.geometry import fill_roi_from_box

    pair = shrink_pair(load_pair(data_dir, "sunnybrook", "scd_SCD0000101_3d"), 4)
    fixed = add_volume(mrml.scene, pair["fixed"], "ES")
    moving = add_volume(mrml.scene, pair["moving"], "ED")
    roi = mrml.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "heart")
    fill_roi_from_box(roi, pair["fixed"], [10, 12, 2], [30, 28, 6])
    logic = RegistrationLogic(mrml.scene)
    request = RegistrationRequest(fixed, moving, RegistrationParameters(iterations=3, mode="slices"), region_roi=roi)
    inputs = logic.prepare(request)
    region = region_from_corners(inputs.region_corners, pair["fixed"])
    assert region.start[::-1] == (10, 12, 2) and region.shape[::-1] == (30, 28, 6)
    outputs = logic.run(request, OutputRequest(inverse_transform=None, jacobian_volume=None))
    assert outputs.report["region"]["index_start"] == [10, 12, 2]
    assert outputs.report["region"]["index_size"] == [30, 28, 6]
    shown = [0.0] * 6
    outputs.region_roi.GetRASBounds(shown)
    given = [0.0] * 6
    roi.GetRASBounds(given)
    assert np.allclose(shown, given, atol=1e-3)


def test_automatic_region_and_masks_from_segmentations(mrml, cardiac_2d):
    """The moving segmentation places the region; a mask segmentation on another volume's grid is refused."""
    outputs = RegistrationLogic(mrml.scene).run(RegistrationRequest(
        cardiac_2d["fixed"], cardiac_2d["moving"], RegistrationParameters(iterations=20),
        cardiac_2d["moving_segmentation"], fixed_mask=cardiac_2d["fixed_segmentation"],
        moving_mask=cardiac_2d["moving_segmentation"]))
    assert outputs.report["region"]["source"] == "ED segmentation"
    assert outputs.region_roi is not None and outputs.report["folded_voxels"] == 0
    whole = RegistrationLogic(mrml.scene).run(RegistrationRequest(
        cardiac_2d["fixed"], cardiac_2d["moving"], RegistrationParameters(iterations=2, region="whole"),
        cardiac_2d["moving_segmentation"]))
    assert whole.report["region"]["source"] == "whole image" and whole.region_roi is None


def saved_mrml(scene, nodes):
    """How the scene file would store each node and its display nodes: MRML's own writer, which puts an element's
    attributes on one line."""
    ids = {node.GetID() for node in nodes} | {
        node.GetNthDisplayNodeID(index) for node in nodes if node.IsA("vtkMRMLDisplayableNode")
        for index in range(node.GetNumberOfDisplayNodes())}
    scene.SetSaveToXMLString(1)
    scene.Commit()
    elements = {}
    for line in scene.GetSceneXMLString().splitlines():
        node_id = next((word[4:-1] for word in line.split() if word.startswith('id="')), None)
        if node_id in ids:
            elements[node_id] = line
    assert set(elements) == ids
    return elements


def test_a_run_with_every_input_leaves_the_inputs_as_a_saved_scene_holds_them(mrml, cardiac_2d):
    """Every attribute the scene file keeps of the inputs, their display nodes included (attributes, reference
    geometry, display settings), compared by MRML's own writer: input_state looks at what a run is known to touch,
    this at everything a user would find changed on reopening the scene."""
    fixed, moving = cardiac_2d["fixed"], cardiac_2d["moving"]
    box = mrml.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    bounds = [0.0] * 6
    moving.GetRASBounds(bounds)
    box.SetXYZ(*(0.5 * (bounds[2 * axis] + bounds[2 * axis + 1]) for axis in range(3)))
    box.SetSize(0.5 * (bounds[1] - bounds[0]), 0.5 * (bounds[3] - bounds[2]), 10.0)
    inputs = [fixed, moving, cardiac_2d["moving_segmentation"], cardiac_2d["fixed_segmentation"], box]
    before = saved_mrml(mrml.scene, inputs)

    RegistrationLogic(mrml.scene).run(RegistrationRequest(
        fixed, moving, RegistrationParameters(iterations=10), cardiac_2d["moving_segmentation"],
        cardiac_2d["fixed_segmentation"], region_roi=box, fixed_mask=cardiac_2d["fixed_segmentation"],
        moving_mask=cardiac_2d["moving_segmentation"]))

    assert saved_mrml(mrml.scene, inputs) == before


def test_a_background_run_fills_the_outputs_chosen_when_it_started_and_leaves_torch_as_it_found_it(mrml, cardiac_2d):
    """The panel used to read its output choices when the job ended, from a parameter node that leaving the module
    had dropped: the result was lost. A run now carries the choices made at Apply. The job also used to leave
    torch's thread count lowered and reseed torch's global generator in Slicer's process."""
    import torch

    logic = RegistrationLogic(mrml.scene)
    chosen = mrml.scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "chosen at Apply")
    threads, random_state = torch.get_num_threads(), torch.get_rng_state()
    run = logic.start(RegistrationRequest(cardiac_2d["fixed"], cardiac_2d["moving"],
                                          RegistrationParameters(iterations=5, seed=3)),
                      OutputRequest(forward_transform=chosen, jacobian_volume=None))
    run.job.wait(120)
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), random_state)
    outputs = logic.finish(run)
    assert outputs.forward_transform is chosen and outputs.jacobian_volume is None
    assert chosen.GetTransformFromParent() is not None


def test_a_panel_run_is_reproduced_exactly_by_the_report_its_transform_keeps(mrml, cardiac_2d, tmp_path):
    """The panel's job leaves a core to the interface, so it fits on fewer threads than a script or the command
    line, and a fit depends on the count: a panel result could not be reproduced from its report. The report (kept
    on the forward transform node, saved with the scene) now records the count; written to a file, it is what
    `--parameters` reads, and it gives the panel's map to the last bit outside Slicer's job."""
    import os
    import torch

    from ODERegistrationLib.engine.presets import load_preset

    fixed, moving = cardiac_2d["fixed"], cardiac_2d["moving"]
    logic = RegistrationLogic(mrml.scene)
    run = logic.start(RegistrationRequest(fixed, moving, RegistrationParameters(iterations=5, region="whole")))
    run.job.wait(120)
    outputs = logic.finish(run)
    report = tmp_path / "report.json"
    report.write_text(outputs.forward_transform.GetAttribute("ODERegistration.report"))
    parameters = load_preset(str(report))
    assert parameters.threads == max(1, min(torch.get_num_threads(), (os.cpu_count() or 2) - 1))
    again = register_images(image_from_volume(fixed), image_from_volume(moving), parameters)
    assert np.array_equal(*(sitk.GetArrayFromImage(result.forward) for result in (outputs.result, again)))

