"""Which output nodes a run fills, and building them from an engine result on the main thread."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import slicer
import vtk

from ..engine import RegistrationResult
from ..engine.parameters import in_panel_words
from .geometry import fill_roi_from_box, fill_volume
from .grid_transform import fill_grid_transform
from .segmentations import fill_segmentation, segment_ids, segment_names

CREATE = "create"
"""An output request meaning "make a new node after the run succeeds"."""

JACOBIAN_COLOR_NAME = "ODERegistration det J (blue < 1 < red)"


@dataclass
class OutputRequest:
    """For each output: an existing node to overwrite, CREATE for a new node, or None to skip it."""

    forward_transform: object = CREATE
    inverse_transform: object = CREATE
    warped_volume: object = CREATE
    jacobian_volume: object = CREATE
    propagated_segmentation: object = CREATE
    region_roi: object = CREATE
    """A Markups ROI showing the region the map was fitted in (left untouched when the whole image was)."""


@dataclass
class RegistrationOutputs:
    """The nodes a run filled, its report (with segment names per label), and the engine result."""

    result: RegistrationResult
    report: Dict
    segment_names: Dict[str, str] = field(default_factory=dict)
    forward_transform: Optional[object] = None
    inverse_transform: Optional[object] = None
    warped_volume: Optional[object] = None
    jacobian_volume: Optional[object] = None
    propagated_segmentation: Optional[object] = None
    region_roi: Optional[object] = None
    warnings: List[str] = field(default_factory=list)
    """The report's warnings, with options named as the panel names them."""


def build_outputs(scene: "slicer.vtkMRMLScene", result: RegistrationResult, request: OutputRequest,
                  fixed: "slicer.vtkMRMLScalarVolumeNode", moving: "slicer.vtkMRMLScalarVolumeNode",
                  moving_segmentation: Optional["slicer.vtkMRMLSegmentationNode"] = None) -> RegistrationOutputs:
    """Create or fill the requested nodes; called only after a successful run."""
    prefix = f"{moving.GetName()} to {fixed.GetName()}"
    outputs = RegistrationOutputs(result, result.report,
                                  warnings=[in_panel_words(warning) for warning in result.report["warnings"]])
    report_text = json.dumps({key: value for key, value in result.report.items() if key != "labels"})

    node = _node(scene, request.forward_transform, "vtkMRMLGridTransformNode", f"{prefix} transform")
    if node is not None:
        fill_grid_transform(node, result.forward)
        node.SetNodeReferenceID(node.GetMovingNodeReferenceRole(), moving.GetID())
        node.SetNodeReferenceID(node.GetFixedNodeReferenceRole(), fixed.GetID())
        node.SetAttribute("ODERegistration.report", report_text)
        outputs.forward_transform = node
    node = _node(scene, request.inverse_transform, "vtkMRMLGridTransformNode", f"{prefix} inverse transform")
    if node is not None:
        fill_grid_transform(node, result.backward)
        node.SetNodeReferenceID(node.GetMovingNodeReferenceRole(), fixed.GetID())
        node.SetNodeReferenceID(node.GetFixedNodeReferenceRole(), moving.GetID())
        outputs.inverse_transform = node
    node = _node(scene, request.warped_volume, "vtkMRMLScalarVolumeNode", f"{prefix} warped")
    if node is not None:
        fill_volume(node, result.warped)
        _ensure_display(node)
        outputs.warped_volume = node
    node = _node(scene, request.jacobian_volume, "vtkMRMLScalarVolumeNode", f"{prefix} det J")
    if node is not None:
        fill_volume(node, result.jacobian)
        _show_as_jacobian(scene, node)
        outputs.jacobian_volume = node
    if moving_segmentation is not None and result.warped_labels is not None:
        ids = segment_ids(moving_segmentation)
        node = _node(scene, request.propagated_segmentation, "vtkMRMLSegmentationNode",
                     f"{moving_segmentation.GetName()} propagated to {fixed.GetName()}")
        if node is not None:
            fill_segmentation(node, result.warped_labels, moving_segmentation, ids, fixed)
            node.CreateDefaultDisplayNodes()
            outputs.propagated_segmentation = node
        outputs.segment_names = {str(value): name
                                 for value, name in enumerate(segment_names(moving_segmentation), start=1)}
    region = result.report["region"]
    if region["source"] != "whole image":
        node = _node(scene, request.region_roi, "vtkMRMLMarkupsROINode", f"{prefix} region")
        if node is not None:
            fill_roi_from_box(node, result.forward, region["index_start"], region["index_size"])
            node.CreateDefaultDisplayNodes()
            outputs.region_roi = node
    return outputs


def _node(scene, requested, class_name: str, name: str):
    if requested is None:
        return None
    if requested == CREATE:
        return scene.AddNewNodeByClass(class_name, scene.GenerateUniqueName(name))
    return requested


def _ensure_display(node) -> None:
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()


def _show_as_jacobian(scene, node) -> None:
    """Diverging colours: blue where tissue shrinks (det J < 1), white at 1, red where it grows; window 0..2."""
    _ensure_display(node)
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(_jacobian_color_node(scene).GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, 2.0)


def _jacobian_color_node(scene):
    existing = scene.GetFirstNodeByName(JACOBIAN_COLOR_NAME)
    if existing is not None:
        return existing
    colors = vtk.vtkColorTransferFunction()
    colors.AddRGBPoint(0.0, 0.0, 0.0, 1.0)
    colors.AddRGBPoint(1.0, 1.0, 1.0, 1.0)
    colors.AddRGBPoint(2.0, 1.0, 0.0, 0.0)
    node = scene.AddNewNodeByClass("vtkMRMLProceduralColorNode", JACOBIAN_COLOR_NAME)
    node.SetAndObserveColorTransferFunction(colors)
    node.SetAttribute("Category", "ODERegistration")
    return node
