"""A real MRML scene with the module logics the Logic needs, without Slicer's application (the slicer-core wheel):
for batch scripts, the docs' rendered views and the tests."""
from __future__ import annotations

import types

import SimpleITK as sitk
import slicer

from .geometry import fill_volume


def headless_scene() -> types.SimpleNamespace:
    """scene, application_logic and the module logics (colors, volumes, transforms, segmentations, sequences),
    registered with the application logic as Slicer does at startup."""
    scene = slicer.vtkMRMLScene()
    application_logic = slicer.vtkSlicerApplicationLogic()
    application_logic.SetMRMLScene(scene)

    def register(name, logic):
        logic.SetMRMLScene(scene)
        logic.SetMRMLApplicationLogic(application_logic)
        application_logic.SetModuleLogic(name, logic)
        return logic

    register("Colors", application_logic.GetColorLogic()).AddDefaultColorNodes()
    logics = types.SimpleNamespace(
        volumes=register("Volumes", slicer.vtkSlicerVolumesLogic()),
        transforms=register("Transforms", slicer.vtkSlicerTransformLogic()),
        segmentations=register("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic()),
        sequences=register("Sequences", slicer.vtkSlicerSequencesLogic()),
    )
    return types.SimpleNamespace(scene=scene, application_logic=application_logic, logics=logics)


def as_slicer_modules(headless: types.SimpleNamespace) -> types.SimpleNamespace:
    """What ``slicer.modules`` holds for slicer.util's helpers (``slicer.modules.<name>.logic()``)."""
    return types.SimpleNamespace(**{name: types.SimpleNamespace(logic=(lambda logic=logic: logic))
                                    for name, logic in vars(headless.logics).items()})


def add_volume(scene, image: sitk.Image, name: str, class_name: str = "vtkMRMLScalarVolumeNode"):
    """A volume node holding ``image`` (a 2-D image becomes a one-slice volume, as Slicer holds it)."""
    node = scene.AddNewNodeByClass(class_name, name)
    fill_volume(node, image if image.GetDimension() == 3 else sitk.JoinSeries(image))
    node.CreateDefaultDisplayNodes()
    return node


def add_volume_sequence(scene, image: sitk.Image, name: str):
    """A 4-D image (x, y, slice, time) as Slicer's Sequences module loads one: a sequence of scalar volumes indexed
    by the time axis' values, and a browser showing it; returns (sequence, browser)."""
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    sequence.SetIndexName("time")
    sequence.SetIndexUnit("ms")
    sequence.SetIndexType(sequence.NumericIndex)
    for t in range(image.GetSize()[3]):
        frame = slicer.vtkMRMLScalarVolumeNode()
        fill_volume(frame, image[:, :, :, t])
        sequence.SetDataNodeAtValue(frame, f"{image.GetOrigin()[3] + t * image.GetSpacing()[3]:g}")
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{name} browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    return sequence, browser
