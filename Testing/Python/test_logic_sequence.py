"""The sequence Logic on real MRML (slicer-core's Sequences logic, tables, plots): a volume sequence and a
segmentation on one frame in; transform and segmentation sequences synchronized to the browser, a volume table and
a plot out, agreeing with ``oderegistration sequence`` on the same frames; a cancelled run changes nothing."""
import csv
import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer")
import vtk  # noqa: E402

from ODERegistrationLib.cli.main import main  # noqa: E402
from ODERegistrationLib.engine import InputError  # noqa: E402
from ODERegistrationLib.engine.presets import load_preset  # noqa: E402
from ODERegistrationLib.logic import SequenceLogic, SequenceRequest  # noqa: E402
from ODERegistrationLib.logic.headless import add_volume, load_volume_sequence  # noqa: E402
from ODERegistrationLib.logic.segmentations import labels_from_segmentation  # noqa: E402

from conftest import grid_points, transform_point_difference  # noqa: E402
from test_logic_registration import add_segment_around, save_segmentation, saved_mrml  # noqa: E402

REFERENCE = 2  # the ED frame of the piece, where the segmentation is drawn
ITERATIONS = "40"


def scene_with_cine(mrml, paths):
    """The piece of the cine loaded by Slicer's own 4-D NIfTI reader (indexed 0, 40, 80 's', as the development
    cine's header says), and the ED contours as a segmentation drawn on the browser's proxy volume at the
    reference frame (as a user draws them)."""
    sequence, browser = load_volume_sequence(mrml.scene, paths["cine"], "cine")
    mrml.logics.sequences.UpdateProxyNodesFromSequences(browser)
    browser.SetSelectedItemNumber(REFERENCE)
    proxy = browser.GetProxyNode(sequence)
    labels = sitk.ReadImage(str(paths["labels"]))[:, :, :, REFERENCE]
    labelmap = add_volume(mrml.scene, labels, "ED labels", "vtkMRMLLabelMapVolumeNode")
    segmentation = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "ED contours")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(proxy)
    slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation)
    for index, name in enumerate(("LV blood pool", "LV myocardium")):
        segmentation.GetSegmentation().GetNthSegment(index).SetName(name)
    mrml.scene.RemoveNode(labelmap.GetDisplayNode())
    mrml.scene.RemoveNode(labelmap)
    return sequence, browser, segmentation


def request(sequence, segmentation, reference=REFERENCE):
    parameters = load_preset("sequence").replace(iterations=int(ITERATIONS))
    return SequenceRequest(sequence, reference, segmentation, parameters)


@pytest.fixture(scope="module")
def command_line(cine_piece_files, tmp_path_factory):
    """The command line's outputs on the same frames, labels and parameters."""
    output = tmp_path_factory.mktemp("cli") / "out"
    assert main(["sequence", "--cine", str(cine_piece_files["cine"]), "--labels", str(cine_piece_files["labels"]),
                 "--reference-phase", str(REFERENCE), "--iterations", ITERATIONS, "--output-dir", str(output),
                 "--quiet"]) == 0
    return output


def test_outputs_are_synchronized_to_the_browser_and_agree_with_the_command_line(mrml, cine_piece_files,
                                                                                command_line):
    sequence, browser, segmentation = scene_with_cine(mrml, cine_piece_files)
    outputs = SequenceLogic(mrml.scene, mrml.logics.sequences).run(request(sequence, segmentation))

    assert outputs.browser is browser
    for made in (outputs.transform_sequence, outputs.segmentation_sequence):
        assert browser.IsSynchronizedSequenceNode(made.GetID())
        assert [made.GetNthIndexValue(i) for i in range(made.GetNumberOfDataNodes())] == \
            [sequence.GetNthIndexValue(i) for i in range(sequence.GetNumberOfDataNodes())]

    es = outputs.report["cycle"]["es_phase"]
    assert es == 0 and outputs.leading_segment == "LV blood pool"  # the piece's first frame is the end-systole
    browser.SetSelectedItemNumber(es)  # scrubbing: the proxies now show the ES frame
    volume = browser.GetProxyNode(sequence)
    shown = labels_from_segmentation(browser.GetProxyNode(outputs.segmentation_sequence), volume)
    written = sitk.ReadImage(str(command_line / "labels.nii.gz"))[:, :, :, es]
    assert np.array_equal(sitk.GetArrayFromImage(shown), sitk.GetArrayFromImage(written))
    assert not np.array_equal(sitk.GetArrayFromImage(shown),
                              sitk.GetArrayFromImage(sitk.ReadImage(str(cine_piece_files["labels"]))[:, :, :, 2]))

    for item in range(3):  # each transform item maps points like that phase's displacement file
        field = sitk.ReadImage(str(command_line / f"forward_phase{item:02d}.nii.gz"), sitk.sitkVectorFloat64)
        node = outputs.transform_sequence.GetNthDataNode(item)
        assert transform_point_difference(node, field, grid_points(volume, 9)) < 1e-3

    table = outputs.table
    rows = list(csv.DictReader((command_line / "volumes.csv").open()))
    assert table.GetNumberOfRows() == 3 and table.GetNumberOfColumns() == 4  # frame, time, two segments
    for row in rows:  # the times in ms, as the command line reads the file: not the index's 40 "s" apart
        assert table.GetTable().GetColumnByName("time (ms)").GetValue(int(row["phase"])) == float(row["time_ms"])
        column = table.GetTable().GetColumnByName(
            {"1": "LV blood pool (ml)", "2": "LV myocardium (ml)"}[row["label"]])
        assert column.GetValue(int(row["phase"])) == pytest.approx(float(row["volume_ml"]), abs=1e-3)
    chart = outputs.plot_chart
    assert chart.GetNumberOfPlotSeriesNodes() == 2
    series = chart.GetNthPlotSeriesNode(0)
    assert series.GetTableNode() is outputs.table and series.GetYColumnName() == "LV blood pool (ml)"
    assert series.GetXColumnName() == "time (ms)" and outputs.report["times_ms"] == [0.0, 40.0, 80.0]
    ejected = [f"{segment} EF {volumes['ef_percent']:.1f} %" for segment, volumes in outputs.segment_volumes.items()
               if volumes["ef_percent"] is not None]
    assert ejected and chart.GetTitle() == "; ".join(["ED frame 2, ES frame 0 (of LV blood pool)"] + ejected)


def test_a_cine_under_a_transform_is_read_and_shown_where_the_user_sees_it(mrml, cine_piece_files):
    """A cine moved by a transform (aligned to another series), contoured over it as shown: the frames in the
    sequence are not under the transform, and the contours were read against them, 20 mm off the image."""
    sequence, browser, segmentation = scene_with_cine(mrml, cine_piece_files)
    shift = mrml.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "aligned")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 20.0)
    shift.SetMatrixTransformToParent(matrix)
    for node in (browser.GetProxyNode(sequence), segmentation):  # the contours lie over the moved cine
        node.SetAndObserveTransformNodeID(shift.GetID())
    parameters = load_preset("sequence").replace(iterations=2)
    outputs = SequenceLogic(mrml.scene, mrml.logics.sequences).run(
        SequenceRequest(sequence, REFERENCE, segmentation, parameters))
    drawn = sitk.ReadImage(str(cine_piece_files["labels"]))[:, :, :, REFERENCE]
    assert np.array_equal(sitk.GetArrayFromImage(outputs.result.labels[REFERENCE]), sitk.GetArrayFromImage(drawn))
    browser.SetSelectedItemNumber(0)
    shown = labels_from_segmentation(browser.GetProxyNode(outputs.segmentation_sequence),
                                     browser.GetProxyNode(sequence))
    assert np.array_equal(sitk.GetArrayFromImage(shown), sitk.GetArrayFromImage(outputs.result.labels[0]))


def test_the_warnings_name_the_panels_settings_not_command_line_options(mrml, cine_piece_files):
    sequence, _, segmentation = scene_with_cine(mrml, cine_piece_files)
    parameters = load_preset("sequence").replace(iterations=2, device="cpu", threads=(os.cpu_count() or 1) + 1)
    outputs = SequenceLogic(mrml.scene, mrml.logics.sequences).run(
        SequenceRequest(sequence, REFERENCE, segmentation, parameters))
    assert any("(CPU threads = 0 uses every core)" in warning for warning in outputs.warnings)
    assert not any("--" in warning for warning in outputs.warnings)


def test_the_command_line_names_the_segments_of_the_labels_slicer_saved(mrml, cine_piece_files, tmp_path, capsys):
    _, _, segmentation = scene_with_cine(mrml, cine_piece_files)
    saved = save_segmentation(mrml.scene, segmentation, tmp_path / "ED.seg.nrrd")
    output = tmp_path / "out"
    assert main(["sequence", "--cine", str(cine_piece_files["cine"]), "--labels", saved, "--reference-phase",
                 str(REFERENCE), "--iterations", "2", "--output-dir", str(output), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "smallest volume of label 1 (LV blood pool), whose" in printed and "label 2 (LV myocardium): ED" in printed
    assert json.loads((output / "report.json").read_text())["labels"]["2"]["name"] == "LV myocardium"


def test_a_run_leaves_the_cine_and_its_segmentation_as_the_scene_saves_them(mrml, cine_piece_files):
    """Only the browser may change (it gains the output sequences); the cine, the frame shown and the contours
    drawn on it stay as MRML's scene writer saves them, display nodes included."""
    sequence, browser, segmentation = scene_with_cine(mrml, cine_piece_files)
    inputs = [sequence, browser.GetProxyNode(sequence), segmentation]
    before = saved_mrml(mrml.scene, inputs)
    SequenceLogic(mrml.scene, mrml.logics.sequences).run(request(sequence, segmentation))
    assert saved_mrml(mrml.scene, inputs) == before


def test_a_cancelled_run_changes_nothing(mrml, cine_piece_files):
    sequence, browser, segmentation = scene_with_cine(mrml, cine_piece_files)
    nodes_before = mrml.scene.GetNumberOfNodes()
    synchronized_before = browser.GetNumberOfSynchronizedSequenceNodes()
    logic = SequenceLogic(mrml.scene, mrml.logics.sequences)
    run = logic.start(request(sequence, segmentation))
    run.job.cancel()
    run.job.wait(60)
    assert run.job.cancelled and logic.finish(run) is None
    assert mrml.scene.GetNumberOfNodes() == nodes_before
    assert browser.GetNumberOfSynchronizedSequenceNodes() == synchronized_before
    assert sequence.GetNumberOfDataNodes() == 3 and segmentation.GetSegmentation().GetNumberOfSegments() == 2


def test_segments_of_one_name_keep_their_own_volumes_and_an_empty_one_no_curve(mrml, cine_piece_files):
    """Two segments named alike shared one table column and one cycle (the second overwrote the first's volumes);
    a segment with no voxel got a curve on a column that does not exist."""
    sequence, browser, segmentation = scene_with_cine(mrml, cine_piece_files)
    segmentation.GetSegmentation().GetNthSegment(1).SetName("LV blood pool")
    segmentation.GetSegmentation().AddEmptySegment("not drawn yet")
    outputs = SequenceLogic(mrml.scene, mrml.logics.sequences).run(request(sequence, segmentation))
    columns = [outputs.table.GetColumnName(index) for index in range(2, outputs.table.GetNumberOfColumns())]
    assert columns == ["LV blood pool (1) (ml)", "LV blood pool (2) (ml)"]
    assert list(outputs.segment_volumes) == ["LV blood pool (1)", "LV blood pool (2)"]
    volumes = [outputs.table.GetTable().GetColumnByName(column).GetValue(REFERENCE) for column in columns]
    labels = sitk.GetArrayFromImage(outputs.result.labels[REFERENCE])
    voxel_ml = np.prod(outputs.result.labels[REFERENCE].GetSpacing()) / 1000.0
    assert volumes == pytest.approx([(labels == value).sum() * voxel_ml for value in (1, 2)])
    chart = outputs.plot_chart
    series = [chart.GetNthPlotSeriesNode(index) for index in range(chart.GetNumberOfPlotSeriesNodes())]
    assert sorted(node.GetYColumnName() for node in series) == columns


def test_a_sequence_indexed_by_frame_numbers_counts_frames_and_says_so(mrml, cine_piece_files):
    """An index that is no time (frame numbers 0, 1, 2 without a unit) was shown as a time column and taken for
    times in ms in the report."""
    sequence, browser, segmentation = scene_with_cine(mrml, cine_piece_files)
    sequence.SetIndexUnit("")
    for item in range(3):
        sequence.UpdateIndexValue(sequence.GetNthIndexValue(item), str(item))
    parameters = load_preset("sequence").replace(iterations=2)
    outputs = SequenceLogic(mrml.scene, mrml.logics.sequences).run(
        SequenceRequest(sequence, REFERENCE, segmentation, parameters))
    assert outputs.report["times_ms"] is None
    assert any("no time step" in warning for warning in outputs.report["warnings"])
    table = outputs.table.GetTable()
    assert [table.GetColumnName(index) for index in range(table.GetNumberOfColumns())] == \
        ["frame", "LV blood pool (ml)", "LV myocardium (ml)"]
    assert outputs.plot_chart.GetNthPlotSeriesNode(0).GetXColumnName() == "frame"


@pytest.mark.parametrize("case, message", [
    ("reference out of range", "out of range"),
    ("one frame", "single phase"),
    ("no frame", "holds no frames"),
    ("frames on different grids", "another grid"),
    ("no segmentation", "select a volume sequence"),
    ("overlapping segments", "segments 'LV blood pool' and 'LV' overlap"),
])
def test_bad_sequence_inputs_are_one_clear_error(mrml, cine_piece_files, case, message):
    sequence, browser, segmentation = scene_with_cine(mrml, cine_piece_files)
    reference = REFERENCE
    if case == "reference out of range":
        reference = 3
    elif case == "one frame":
        sequence.RemoveDataNodeAtValue(sequence.GetNthIndexValue(0))
        sequence.RemoveDataNodeAtValue(sequence.GetNthIndexValue(0))
        reference = 0
    elif case == "no frame":
        sequence.RemoveAllDataNodes()
        reference = 0
    elif case == "frames on different grids":
        origin = list(sequence.GetNthDataNode(1).GetOrigin())
        sequence.GetNthDataNode(1).SetOrigin(origin[0] + 5.0, origin[1], origin[2])
    elif case == "overlapping segments":
        add_segment_around(segmentation, browser.GetProxyNode(sequence), "LV")
    else:
        segmentation = None
    nodes_before = mrml.scene.GetNumberOfNodes()
    with pytest.raises(InputError, match=message):
        SequenceLogic(mrml.scene, mrml.logics.sequences).prepare(request(sequence, segmentation, reference))
    assert mrml.scene.GetNumberOfNodes() == nodes_before


def test_a_cancel_during_the_last_steps_still_cancels():
    """Cancel pressed while the outputs are being made (after the optimizer's last check) must still leave the
    scene as it was: the job drops the result."""
    from ODERegistrationLib.logic.job import EngineJob

    def task(progress, cancel):
        job.cancel()  # the user presses Cancel while the engine writes its outputs
        return "outputs"

    job = EngineJob(task)
    job.run()
    assert job.cancelled and job.result is None
