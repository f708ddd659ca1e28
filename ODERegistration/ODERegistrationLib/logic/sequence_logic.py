"""SequenceLogic: a volume sequence and a segmentation drawn on one of its frames in; a transform sequence and a
segmentation sequence synchronized to the browser of the volume sequence, a volume table and a volume-curve plot
out. Scrubbing the browser then moves the contours with the wall.

Qt-free, like RegistrationLogic, and built on Slicer's own Sequences logic (proxy nodes, synchronization).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import slicer
import vtk

from ..engine import InputError, RegistrationParameters
from ..engine.parameters import in_panel_words
from ..engine.presets import SEQUENCE_PRESET, load_preset
from ..engine.pipeline.cine import Cine, check_cine, reference_labels, times_in_ms
from ..engine.pipeline.sequence import SequenceResult, register_sequence
from .geometry import image_from_volume, roi_corners_lps
from .grid_transform import fill_grid_transform
from .job import EngineJob, EngineTask
from .segmentations import fill_segmentation, labels_from_segmentation, segment_ids, segment_names


@dataclass
class SequenceRequest:
    """What to propagate: a sequence of scalar volumes, the frame the segmentation was drawn on, and parameters."""

    volume_sequence: object
    """A vtkMRMLSequenceNode of scalar volumes, as Slicer loads a 4-D NIfTI or a cine DICOM series."""
    reference_index: int
    """Item number (0-based) of the frame the segmentation is drawn on."""
    segmentation: object
    parameters: RegistrationParameters = field(default_factory=lambda: load_preset(SEQUENCE_PRESET))
    region_roi: Optional[object] = None
    """A Markups ROI node: the maps are fitted in its box (else the region around the segmentation)."""


@dataclass
class SequenceOutputs:
    """The nodes a run made, the engine result and its report (the ED and ES frames in its "cycle"), and each
    segment's volumes at ED and ES and its EF, by name."""

    result: SequenceResult
    report: Dict
    browser: object
    transform_sequence: object
    """Item t resamples the reference frame onto frame t (like forward_phaseNN.nii.gz of the command line)."""
    segmentation_sequence: object
    table: object
    plot_chart: object
    segment_volumes: Dict[str, Dict] = field(default_factory=dict)
    leading_segment: str = ""
    """The segment whose volume changes most: its largest and smallest volume give the ED and ES frames."""
    warnings: List[str] = field(default_factory=list)
    """The report's warnings, with options named as the panel names them."""


@dataclass
class SequenceRun:
    """A started job and the request it was started from."""

    job: EngineJob
    request: SequenceRequest


FRAME = "frame"
TIME = "time (ms)"
"""The volume table's first columns; the plot draws the volumes over the time when there is one."""


class SequenceLogic:
    """Prepare a sequence, run the engine (blocking or in a background job) and build the output nodes."""

    def __init__(self, scene=None, sequences_logic=None) -> None:
        self.scene = scene if scene is not None else slicer.mrmlScene
        self.sequences_logic = sequences_logic if sequences_logic is not None else slicer.modules.sequences.logic()

    def prepare(self, request: SequenceRequest) -> EngineTask:
        """Snapshot the frames and the labels on the main thread and return the engine task; nothing in the scene
        changes."""
        sequence, index = request.volume_sequence, request.reference_index
        if sequence is None or request.segmentation is None:
            raise InputError("select a volume sequence and a segmentation drawn on one of its frames")
        name = sequence.GetName()
        frames = [sequence.GetNthDataNode(item) for item in range(sequence.GetNumberOfDataNodes())]
        if not frames:
            raise InputError(f"{name}: holds no frames; choose a sequence of image volumes")
        for item, frame in enumerate(frames):
            if frame is None or not frame.IsA("vtkMRMLScalarVolumeNode") or frame.IsA("vtkMRMLLabelMapVolumeNode"):
                raise InputError(f"{name}: item {item} is not a scalar volume; choose a sequence of image volumes")
        if not 0 <= index < len(frames):
            raise InputError(f"reference frame {index}: out of range; {name} has frames 0 to {len(frames) - 1}")
        cine = check_cine(Cine([image_from_volume(frame) for frame in frames], _times(sequence), 3), name)
        drawn = labels_from_segmentation(request.segmentation, self._shown_frame(sequence) or frames[index])
        drawn.CopyInformation(cine.phases[index])  # the proxy's voxels are the frames', whatever transform moves it
        labels = reference_labels(drawn, cine, index, request.segmentation.GetName())
        corners = roi_corners_lps(request.region_roi) if request.region_roi is not None else None
        names = {"cine": name, "labels": request.segmentation.GetName()}
        return lambda progress, cancel: register_sequence(cine, labels, index, request.parameters, progress, cancel,
                                                          names, region_corners=corners)

    def _shown_frame(self, sequence):
        """The browser's proxy volume, which the user sees and draws on. The frames are read as loaded, in the
        cine's own coordinates; exported against the proxy, the segmentation lands in them even when the proxy is
        under a transform (against a frame, which no transform reaches, it came out shifted by that transform)."""
        browser = self.sequences_logic.GetFirstBrowserNodeForSequenceNode(sequence)
        return browser.GetProxyNode(sequence) if browser is not None else None

    def start(self, request: SequenceRequest) -> SequenceRun:
        """Start a background job; poll ``run.job``, then call :meth:`finish` on the main thread."""
        run = SequenceRun(EngineJob(self.prepare(request), request.parameters.device), request)
        run.job.start()
        return run

    def finish(self, run: SequenceRun) -> Optional[SequenceOutputs]:
        """Build the output nodes of a finished run; None when it was cancelled (the scene stays untouched)."""
        if run.job.error is not None:
            raise run.job.error
        if run.job.cancelled or run.job.result is None:
            return None
        return self._build(run.request, run.job.result)

    def run(self, request: SequenceRequest) -> SequenceOutputs:
        """Blocking run, for scripts and tests."""
        run = SequenceRun(EngineJob(self.prepare(request), request.parameters.device), request)
        run.job.run()
        return self.finish(run)

    def _build(self, request: SequenceRequest, result: SequenceResult) -> SequenceOutputs:
        volumes, segmentation = request.volume_sequence, request.segmentation
        prefix = f"{segmentation.GetName()} through {volumes.GetName()}"
        transforms = self._sequence_like(volumes, f"{prefix} transforms")
        segmentations = self._sequence_like(volumes, f"{prefix} segmentations")
        ids = segment_ids(segmentation)
        staging = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "ODERegistration staging")
        try:  # a segmentation is filled in the scene (slicer.util needs it there); the sequence keeps a copy
            for item, (forward, labels) in enumerate(zip(result.forward, result.labels)):
                value = volumes.GetNthIndexValue(item)
                transform = slicer.vtkMRMLGridTransformNode()
                fill_grid_transform(transform, forward)
                transforms.SetDataNodeAtValue(transform, value)
                fill_segmentation(staging, labels, segmentation, ids, volumes.GetNthDataNode(item))
                segmentations.SetDataNodeAtValue(staging, value)
        finally:
            self.scene.RemoveNode(staging)

        browser = self.sequences_logic.GetFirstBrowserNodeForSequenceNode(volumes)
        if browser is None:
            browser = self.scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{volumes.GetName()} browser")
            browser.SetAndObserveMasterSequenceNodeID(volumes.GetID())
        for sequence in (transforms, segmentations):
            browser.AddSynchronizedSequenceNodeID(sequence.GetID())
            browser.SetSaveChanges(sequence, False)  # editing the proxy must not rewrite the propagated frames
        self.sequences_logic.UpdateProxyNodesFromSequences(browser)
        contours = browser.GetProxyNode(segmentations)
        contours.CreateDefaultDisplayNodes()
        contours.SetAndObserveTransformNodeID(browser.GetProxyNode(volumes).GetTransformNodeID())  # over the frames

        names = dict(zip((str(value) for value in range(1, len(ids) + 1)), segment_names(segmentation)))
        segment_volumes = {names[label]: volumes for label, volumes in result.report["labels"].items()}
        table = self._volume_table(f"{prefix} volumes", result, names)
        x_column = FRAME if result.report["times_ms"] is None else TIME
        chart = self._volume_chart(f"{prefix} volume curve", table, x_column, segmentation, ids, names,
                                   result.report["cycle"], segment_volumes)
        return SequenceOutputs(result, result.report, browser, transforms, segmentations, table, chart,
                               segment_volumes, names[result.report["cycle"]["label"]],
                               [in_panel_words(warning) for warning in result.report["warnings"]])

    def _sequence_like(self, volumes, name: str):
        """An empty sequence indexed like the volume sequence, so that the browser pairs their items by value."""
        sequence = self.scene.AddNewNodeByClass("vtkMRMLSequenceNode", self.scene.GenerateUniqueName(name))
        sequence.SetIndexName(volumes.GetIndexName())
        sequence.SetIndexUnit(volumes.GetIndexUnit())
        sequence.SetIndexType(volumes.GetIndexType())
        return sequence

    def _volume_table(self, name: str, result: SequenceResult, names: Dict[str, str]):
        """One row per frame: item, time in ms (when the sequence's index gives one), and each segment's volume in
        ml."""
        table = self.scene.AddNewNodeByClass("vtkMRMLTableNode", self.scene.GenerateUniqueName(name))
        times = result.report["times_ms"]
        columns = [(FRAME, vtk.vtkIntArray(), range(len(result.labels)))]
        if times is not None:
            columns.append((TIME, vtk.vtkDoubleArray(), times))
        columns += [(f"{names[str(label)]} (ml)", vtk.vtkDoubleArray(), volumes_ml)
                    for label, volumes_ml in result.volumes_ml.items()]
        for title, array, values in columns:
            array.SetName(title)
            for value in values:
                array.InsertNextValue(value)
            table.AddColumn(array)
        return table

    def _volume_chart(self, name: str, table, x_column: str, segmentation, ids: List[str], names: Dict[str, str],
                      cycle: Dict, segment_volumes: Dict[str, Dict]):
        """A line per segment over the cycle against the table's ``x_column``, coloured like the segment; the ED
        and ES frames and each segment's EF in the title."""
        chart = self.scene.AddNewNodeByClass("vtkMRMLPlotChartNode", self.scene.GenerateUniqueName(name))
        for label, segment_id in enumerate(ids, start=1):
            segment_name = names[str(label)]
            if segment_name not in segment_volumes:  # a segment with no voxel has no volume column
                continue
            series = self.scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{segment_name} volume")
            series.SetAndObserveTableNodeID(table.GetID())
            series.SetXColumnName(x_column)
            series.SetYColumnName(f"{segment_name} (ml)")
            series.SetPlotType(series.PlotTypeScatter)
            series.SetColor(*segmentation.GetSegmentation().GetSegment(segment_id).GetColor())
            chart.AddAndObservePlotSeriesNodeID(series.GetID())
        frames = f"ED frame {cycle['ed_phase']}, ES frame {cycle['es_phase']} (of {names[cycle['label']]})"
        ejected = [f"{segment} EF {volumes['ef_percent']:.1f} %" for segment, volumes in segment_volumes.items()
                   if volumes["ef_percent"] is not None]
        chart.SetTitle("; ".join([frames] + ejected))
        chart.SetXAxisTitle(x_column)
        chart.SetYAxisTitle("volume (ml)")
        return chart


def _times(sequence) -> Optional[List[float]]:
    """The frames' times in ms from the sequence's index (Slicer loads a 4-D NIfTI indexed by its time axis, in the
    file's unit: the engine's rule for a cine file decides), or None when the index is no time."""
    values = [sequence.GetNthIndexValue(item) for item in range(sequence.GetNumberOfDataNodes())]
    try:
        return times_in_ms([float(value) for value in values], sequence.GetIndexUnit())
    except ValueError:
        return None
