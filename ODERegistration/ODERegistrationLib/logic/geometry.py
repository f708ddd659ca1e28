"""MRML volume nodes <-> SimpleITK images, in world coordinates (RAS in Slicer, LPS in ITK).

A volume under a linear transform is read at its *world* position, so an initial alignment the user made is
honoured rather than silently dropped; a volume under a non-linear transform is refused with a clear message.
"""
from __future__ import annotations

import itertools
from typing import List

import numpy as np
import SimpleITK as sitk
import slicer
import vtk

from ..engine import InputError

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
"""Flips RAS to LPS and back (its own inverse); applies to points, directions and displacement vectors."""


def ijk_to_world(node: "slicer.vtkMRMLVolumeNode") -> np.ndarray:
    """4x4 IJK -> world RAS matrix, including the node's parent transforms when they are linear."""
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    ijk_to_ras = slicer.util.arrayFromVTKMatrix(matrix)
    parent = node.GetParentTransformNode()
    if parent is None:
        return ijk_to_ras
    if not parent.IsTransformToWorldLinear():
        raise InputError(f"{node.GetName()}: is under the non-linear transform {parent.GetName()}; "
                         "harden it first or remove it")
    to_world = vtk.vtkMatrix4x4()
    parent.GetMatrixTransformToWorld(to_world)
    return slicer.util.arrayFromVTKMatrix(to_world) @ ijk_to_ras


def image_from_volume(node: "slicer.vtkMRMLVolumeNode") -> sitk.Image:
    """A copy of the volume as a SimpleITK image with its world geometry (LPS)."""
    image_data = None if node is None else node.GetImageData()
    if image_data is None or image_data.GetPointData().GetScalars() is None:
        raise InputError(f"{node.GetName() if node else 'volume'}: has no image data (no voxels loaded)")
    if image_data.GetNumberOfScalarComponents() != 1:
        raise InputError(f"{node.GetName()}: has {image_data.GetNumberOfScalarComponents()} components "
                         "per voxel; a scalar (grey-level) volume is needed")
    ijk_to_ras = ijk_to_world(node)
    spacing = np.linalg.norm(ijk_to_ras[:3, :3], axis=0)
    if not np.all(np.isfinite(spacing) & (spacing > 0)):
        raise InputError(f"{node.GetName()}: its voxel size is {np.round(spacing, 6).tolist()} mm; every axis needs "
                         "a positive size (Volumes module, Volume Information)")
    image = sitk.GetImageFromArray(np.array(slicer.util.arrayFromVolume(node), copy=True))
    _set_world_geometry(image, ijk_to_ras, spacing)
    return image


def _set_world_geometry(image: sitk.Image, ijk_to_ras: np.ndarray, spacing: np.ndarray) -> None:
    linear = RAS_TO_LPS @ ijk_to_ras[:3, :3]
    image.SetSpacing(spacing.tolist())
    image.SetDirection((linear / spacing).ravel().tolist())
    image.SetOrigin((RAS_TO_LPS @ ijk_to_ras[:3, 3]).tolist())


def ijk_to_ras_from_image(image: sitk.Image) -> np.ndarray:
    """4x4 IJK -> RAS matrix of a 3-D SimpleITK image."""
    matrix = np.eye(4)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    matrix[:3, :3] = RAS_TO_LPS @ direction @ np.diag(image.GetSpacing())
    matrix[:3, 3] = RAS_TO_LPS @ np.asarray(image.GetOrigin())
    return matrix


def fill_volume(node: "slicer.vtkMRMLVolumeNode", image: sitk.Image) -> None:
    """Put a SimpleITK image's voxels and geometry into a volume node (which keeps no parent transform)."""
    slicer.util.updateVolumeFromArray(node, sitk.GetArrayFromImage(image))
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(ijk_to_ras_from_image(image)))
    node.SetAndObserveTransformNodeID(None)


def roi_corners_lps(roi_node: "slicer.vtkMRMLMarkupsROINode") -> List[List[float]]:
    """The eight world corners of a Markups ROI (rotated or not, parent transforms included), in LPS. An ROI added
    but never placed in a view has no position: its box would be a point at the origin."""
    if roi_node.GetNumberOfDefinedControlPoints() == 0:
        raise InputError(f"{roi_node.GetName()}: is not placed yet; place it in a view, or choose another region")
    object_to_world = slicer.util.arrayFromVTKMatrix(roi_node.GetObjectToWorldMatrix())
    half = np.asarray(roi_node.GetSize()) / 2.0
    corners = [object_to_world @ np.array([*signs * half, 1.0]) for signs in itertools.product((-1.0, 1.0), repeat=3)]
    return [(RAS_TO_LPS @ corner[:3]).tolist() for corner in corners]


def fill_roi_from_box(roi_node: "slicer.vtkMRMLMarkupsROINode", reference: sitk.Image, index_start: List[int],
                      index_size: List[int]) -> None:
    """Make the ROI the box of voxels ``index_start`` .. ``+ index_size`` (ITK order) of a 3-D reference image,
    oriented like its grid, so an oblique image gets an ROI that matches its voxels exactly."""
    spacing = np.asarray(reference.GetSpacing())
    direction = np.asarray(reference.GetDirection()).reshape(3, 3)
    centre_index = np.asarray(index_start, float) + (np.asarray(index_size) - 1) / 2.0
    object_to_node = np.eye(4)
    object_to_node[:3, :3] = RAS_TO_LPS @ direction
    object_to_node[:3, 3] = RAS_TO_LPS @ np.asarray(reference.TransformContinuousIndexToPhysicalPoint(centre_index.tolist()))
    roi_node.SetAndObserveObjectToNodeMatrix(slicer.util.vtkMatrixFromArray(object_to_node))
    roi_node.SetSize(*(np.asarray(index_size) * spacing).tolist())
