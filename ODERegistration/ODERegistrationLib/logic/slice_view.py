"""A slice view rendered offscreen by Slicer's own display code: the slice logic blends the layers and the slice
view displayable managers draw transforms (grid mode) and segmentations (outlines), as in Slicer's Red view.

Used to check, and to show in the docs, what a user sees after a run, without Slicer's application: the
slicer-core wheel has the slice logic and the displayable managers, VTK renders offscreen (EGL or OSMesa).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import slicer
import vtk
from vtk.util.numpy_support import vtk_to_numpy

from .output_nodes import RegistrationOutputs

DISPLAYABLE_MANAGERS = ("vtkMRMLSegmentationsDisplayableManager2D", "vtkMRMLTransformsDisplayableManager2D")


class OffscreenSliceView:
    """One slice view (image layers, segmentations, transforms) rendered into an RGB array."""

    def __init__(self, scene, application_logic, name: str = "Red", size: Tuple[int, int] = (480, 480)) -> None:
        self.size = size
        self.renderer = vtk.vtkRenderer()
        self.renderer.GetActiveCamera().ParallelProjectionOn()
        self.window = vtk.vtkRenderWindow()
        self.window.SetOffScreenRendering(1)
        self.window.SetMultiSamples(0)
        self.window.SetSize(*size)
        self.window.AddRenderer(self.renderer)
        self.interactor = vtk.vtkGenericRenderWindowInteractor()  # the managers' widgets need one
        self.interactor.SetRenderWindow(self.window)
        self.interactor.Initialize()

        factory = slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance()
        factory.SetMRMLApplicationLogic(application_logic)
        for manager in DISPLAYABLE_MANAGERS:
            if not factory.IsDisplayableManagerRegistered(manager):
                factory.RegisterDisplayableManager(manager)
        self.managers = slicer.vtkMRMLDisplayableManagerGroup()
        self.managers.Initialize(factory, self.renderer)

        self.logic = slicer.vtkMRMLSliceLogic()
        self.logic.SetMRMLApplicationLogic(application_logic)
        self.logic.SetMRMLScene(scene)
        self.slice_node = self.logic.AddSliceNode(name)
        self.managers.SetMRMLDisplayableNode(self.slice_node)
        self.logic.ResizeSliceNode(*size)

        mapper = vtk.vtkImageMapper()  # the blended layers, RGBA 0..255 (as CTK's light box manager shows them)
        mapper.SetColorWindow(255)
        mapper.SetColorLevel(127.5)
        self.image_actor = vtk.vtkActor2D()
        self.image_actor.SetMapper(mapper)
        self.image_actor.GetProperty().SetDisplayLocationToBackground()  # under the managers' actors
        self.renderer.AddViewProp(self.image_actor)

    def show(self, background: "slicer.vtkMRMLVolumeNode", foreground: Optional["slicer.vtkMRMLVolumeNode"] = None,
             foreground_opacity: float = 0.5) -> None:
        """Background (and blended foreground) volumes, the slice turned to the background's axes and fitted."""
        composite = self.logic.GetSliceCompositeNode()
        composite.SetBackgroundVolumeID(background.GetID())
        composite.SetForegroundVolumeID(foreground.GetID() if foreground is not None else None)
        composite.SetForegroundOpacity(foreground_opacity)
        self.logic.RotateSliceToLowestVolumeAxes(False)
        self.logic.FitSliceToBackground()
        self.logic.SnapSliceOffsetToIJK()

    def render(self) -> np.ndarray:
        """The view as (rows, columns, 3) uint8, top row first."""
        self.image_actor.GetMapper().SetInputConnection(self.logic.GetImageDataConnection())
        self.managers.RequestRender()
        self.window.Render()
        grab = vtk.vtkWindowToImageFilter()
        grab.SetInput(self.window)
        grab.ReadFrontBufferOff()
        grab.Update()
        width, height = self.window.GetSize()
        pixels = vtk_to_numpy(grab.GetOutput().GetPointData().GetScalars()).reshape(height, width, -1)[..., :3]
        return np.ascontiguousarray(pixels[::-1])

    def pixel_of(self, ras: Sequence[float]) -> Tuple[int, int]:
        """(row, column) in :meth:`render`'s array of a RAS point on the slice."""
        ras_to_xy = vtk.vtkMatrix4x4()
        vtk.vtkMatrix4x4.Invert(self.slice_node.GetXYToRAS(), ras_to_xy)
        x, y, _, _ = ras_to_xy.MultiplyPoint([*ras, 1.0])
        return int(round(self.size[1] - 1 - y)), int(round(x))

    def close(self) -> None:
        self.managers.SetMRMLDisplayableNode(None)
        self.window.Finalize()


def show_grid(transform_node: "slicer.vtkMRMLTransformNode", visible: bool = True) -> None:
    """The transform drawn as a deformed grid in the slice views (Slicer's Transforms module, grid mode)."""
    transform_node.CreateDefaultDisplayNodes()
    display = transform_node.GetDisplayNode()
    display.SetVisualizationMode(display.VIS_MODE_GRID)
    display.SetVisibility2D(visible)
    display.SetVisibility(visible)


def show_segmentation(segmentation_node: "slicer.vtkMRMLSegmentationNode", visible: bool = True) -> None:
    segmentation_node.CreateDefaultDisplayNodes()
    segmentation_node.GetDisplayNode().SetVisibility(visible)


def render_qa_views(view: OffscreenSliceView, fixed_volume: "slicer.vtkMRMLScalarVolumeNode",
                    outputs: RegistrationOutputs) -> Dict[str, np.ndarray]:
    """What a user looks at after a run, as Slicer draws it: ``grid`` (fixed and warped blended half and half,
    the forward transform's grid), ``jacobian`` (det J with its colour table) and, with a propagated segmentation,
    ``segmentation`` (its segments over the fixed volume). Leaves the grid and the segmentation hidden."""
    views = {}
    segmentation = outputs.propagated_segmentation
    if segmentation is not None:
        show_segmentation(segmentation, False)
    view.show(fixed_volume, outputs.warped_volume)
    show_grid(outputs.forward_transform)
    views["grid"] = view.render()
    show_grid(outputs.forward_transform, False)
    view.show(outputs.jacobian_volume)
    views["jacobian"] = view.render()
    if segmentation is not None:
        view.show(fixed_volume)
        show_segmentation(segmentation)
        views["segmentation"] = view.render()
        show_segmentation(segmentation, False)
    return views


def save_png(pixels: np.ndarray, path: str) -> None:
    """Write an (rows, columns, 3) uint8 array as a PNG with VTK's writer."""
    image = vtk.vtkImageData()
    image.SetDimensions(pixels.shape[1], pixels.shape[0], 1)
    flat = np.ascontiguousarray(pixels[::-1]).reshape(-1, 3)
    from vtk.util.numpy_support import numpy_to_vtk

    image.GetPointData().SetScalars(numpy_to_vtk(flat, deep=True, array_type=vtk.VTK_UNSIGNED_CHAR))
    writer = vtk.vtkPNGWriter()
    writer.SetFileName(str(path))
    writer.SetInputData(image)
    writer.Write()
