"""Segmentation nodes <-> label maps, keeping segment names, colours and terminology."""
from __future__ import annotations

import contextlib
from typing import Iterator, List, Optional, Sequence

import numpy as np
import SimpleITK as sitk
import slicer
import vtk

from ..engine import InputError
from .geometry import image_from_volume


def segment_ids(segmentation_node: "slicer.vtkMRMLSegmentationNode") -> List[str]:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegmentID(index) for index in range(segmentation.GetNumberOfSegments())]


def segment_names(segmentation_node: "slicer.vtkMRMLSegmentationNode") -> List[str]:
    """The segments' names, a repeated one followed by the segment's number ('LV (2)'): tables, plots and the
    pairing of fixed with moving segments go by name."""
    segmentation = segmentation_node.GetSegmentation()
    names = [segmentation.GetSegment(segment_id).GetName() for segment_id in segment_ids(segmentation_node)]
    return [name if names.count(name) == 1 else f"{name} ({number})" for number, name in enumerate(names, start=1)]


def labels_from_segmentation(segmentation_node: "slicer.vtkMRMLSegmentationNode",
                             reference_volume: "slicer.vtkMRMLVolumeNode",
                             numbered_like: Optional[Sequence[str]] = None, exclusive: bool = True) -> sitk.Image:
    """The segmentation as a label map on the reference volume's grid: label n is the n-th segment (1-based).

    With ``numbered_like`` (segment names of another segmentation), a segment takes the number of the segment of
    the same name there, and unmatched segments are left out: that is how fixed and moving segments are paired
    for scoring. ``exclusive`` refuses segments that share voxels: a label map holds one segment per voxel, so the
    earlier segment would be propagated and scored without them (a mask, which only counts its union, passes
    ``False``). The export works on a temporary copy of the segmentation, removed again, so the scene is unchanged.
    """
    ids = segment_ids(segmentation_node)
    if not ids:
        raise InputError(f"{segmentation_node.GetName()}: has no segments; draw at least one, or leave it out")
    with _working_copy(segmentation_node) as copy:
        labels = sitk.Cast(_exported(copy, ids, reference_volume), sitk.sitkUInt16)
        if not sitk.GetArrayViewFromImage(labels).any():
            raise InputError(f"{segmentation_node.GetName()}: none of its segments covers a voxel of "
                             f"{reference_volume.GetName()}; draw them on that volume")
        if exclusive and len(ids) > 1:
            _refuse_overlaps(copy, ids, reference_volume)
    if numbered_like is None:
        return labels
    array = sitk.GetArrayFromImage(labels)
    renumbered = np.zeros_like(array)
    for value, name in enumerate(segment_names(segmentation_node), start=1):
        if name in numbered_like:
            renumbered[array == value] = list(numbered_like).index(name) + 1
    if not renumbered.any():
        raise InputError(f"{segmentation_node.GetName()}: none of its segments is named like a segment to compare "
                         f"it with ({', '.join(numbered_like)}); segments are paired by name")
    matched = sitk.GetImageFromArray(renumbered)
    matched.CopyInformation(labels)
    return matched


@contextlib.contextmanager
def _working_copy(segmentation_node: "slicer.vtkMRMLSegmentationNode") -> Iterator["slicer.vtkMRMLSegmentationNode"]:
    """A copy of the segmentation to export from, with its name and parent transform; on leaving, the copy and every
    node added while it was in use (the exports' labelmaps) are removed again.

    Exporting a segmentation whose source is not a binary labelmap (a closed surface made from a model, say) adds a
    labelmap representation to the node exported, and the user's node must come back as it was given. One copy
    serves every export of a call, so the conversion is done once."""
    scene = segmentation_node.GetScene()
    nodes_before = {scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())}
    copy = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", segmentation_node.GetName())
    copy.GetSegmentation().DeepCopy(segmentation_node.GetSegmentation())
    copy.SetAndObserveTransformNodeID(segmentation_node.GetTransformNodeID())
    try:
        yield copy
    finally:
        added = [scene.GetNthNode(index) for index in range(scene.GetNumberOfNodes())]
        for node in added:
            if node.GetID() not in nodes_before:
                scene.RemoveNode(node)


def _exported(segmentation_node: "slicer.vtkMRMLSegmentationNode", ids: Sequence[str],
              reference_volume: "slicer.vtkMRMLVolumeNode") -> sitk.Image:
    """Segments ``ids`` as one label map on the reference grid (Slicer's export: a later segment wins a shared
    voxel), through a labelmap node added to the scene (a :func:`_working_copy` removes it)."""
    id_array = vtk.vtkStringArray()
    for segment_id in ids:
        id_array.InsertNextValue(segment_id)
    labelmap = segmentation_node.GetScene().AddNewNodeByClass("vtkMRMLLabelMapVolumeNode",
                                                              "ODERegistration temporary labels")
    if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation_node, id_array, labelmap, reference_volume):
        raise RuntimeError(f"{segmentation_node.GetName()}: its segments could not be exported to a label map")
    return image_from_volume(labelmap)


def _refuse_overlaps(segmentation_node: "slicer.vtkMRMLSegmentationNode", ids: Sequence[str],
                     reference_volume: "slicer.vtkMRMLVolumeNode") -> None:
    """Segments that share voxels (an epicardium drawn around its cavity) cannot travel as one label map."""
    names = segment_names(segmentation_node)
    masks = [sitk.GetArrayFromImage(_exported(segmentation_node, [segment_id], reference_volume)) > 0
             for segment_id in ids]
    for first in range(len(ids)):
        for second in range(first + 1, len(ids)):
            shared = int(np.count_nonzero(masks[first] & masks[second]))
            if shared:
                raise InputError(
                    f"{segmentation_node.GetName()}: segments '{names[first]}' and '{names[second]}' overlap "
                    f"({shared} voxels of {reference_volume.GetName()}); one label map carries one segment per "
                    f"voxel, so '{names[first]}' would come back without them. Make the segments exclusive (Segment "
                    f"Editor, Logical operators: subtract '{names[second]}' from '{names[first]}'), or propagate "
                    "the overlapping one in a run of its own")


def fill_segmentation(target: "slicer.vtkMRMLSegmentationNode", labels: sitk.Image,
                      source: "slicer.vtkMRMLSegmentationNode", source_ids: List[str],
                      reference_volume: "slicer.vtkMRMLVolumeNode") -> None:
    """Replace the target's segments by the label map's, named, coloured and tagged like the source's segments."""
    target.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
    segmentation = target.GetSegmentation()
    segmentation.RemoveAllSegments()
    array = sitk.GetArrayFromImage(labels)
    for value, source_id in enumerate(source_ids, start=1):
        segment = slicer.vtkSegment()
        segment.DeepCopyMetadata(source.GetSegmentation().GetSegment(source_id))
        segmentation.AddSegment(segment, source_id)
        slicer.util.updateSegmentBinaryLabelmapFromArray((array == value).astype(np.uint8), target, source_id,
                                                         reference_volume)
