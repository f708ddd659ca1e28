"""ITK displacement fields (LPS, resampling convention) as Slicer grid transforms (RAS, FromParent)."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import slicer
import vtk
from vtk.util import numpy_support

from .geometry import RAS_TO_LPS, ijk_to_ras_from_image


def oriented_grid_transform(field: sitk.Image) -> "slicer.vtkOrientedGridTransform":
    """A linear-interpolating vtkOrientedGridTransform holding the field's vectors in RAS on the field's grid.

    Stored as TransformFromParent it maps a world point x to x + U(x), exactly like ITK resampling does, so a
    volume under it is pulled into place without any iterative inversion.
    """
    vectors = sitk.GetArrayFromImage(field).astype(np.float64) @ RAS_TO_LPS.T
    ijk_to_ras = ijk_to_ras_from_image(field)
    spacing = np.linalg.norm(ijk_to_ras[:3, :3], axis=0)
    grid = vtk.vtkImageData()
    grid.SetDimensions(*field.GetSize())
    grid.SetOrigin(*ijk_to_ras[:3, 3])
    grid.SetSpacing(*spacing)
    scalars = numpy_support.numpy_to_vtk(np.ascontiguousarray(vectors.reshape(-1, 3)), deep=True)
    scalars.SetNumberOfComponents(3)
    grid.GetPointData().SetScalars(scalars)
    direction = np.eye(4)
    direction[:3, :3] = ijk_to_ras[:3, :3] / spacing
    transform = slicer.vtkOrientedGridTransform()
    transform.SetDisplacementGridData(grid)
    transform.SetGridDirectionMatrix(slicer.util.vtkMatrixFromArray(direction))
    transform.SetInterpolationModeToLinear()
    return transform


def fill_grid_transform(node: "slicer.vtkMRMLGridTransformNode", field: sitk.Image) -> None:
    node.SetAndObserveTransformFromParent(oriented_grid_transform(field))
