"""A real MRML scene with the module logics the Logic needs, without Slicer's application (the slicer-core wheel):
for batch scripts, the docs' rendered views and the tests."""
from __future__ import annotations

import types
from typing import Tuple

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


def add_volume(scene: "slicer.vtkMRMLScene", image: sitk.Image, name: str,
               class_name: str = "vtkMRMLScalarVolumeNode") -> "slicer.vtkMRMLVolumeNode":
    """A volume node holding ``image`` (a 2-D image becomes a one-slice volume, as Slicer holds it)."""
    node = scene.AddNewNodeByClass(class_name, name)
    fill_volume(node, image if image.GetDimension() == 3 else sitk.JoinSeries(image))
    node.CreateDefaultDisplayNodes()
    return node


def load_volume_sequence(scene: "slicer.vtkMRMLScene", path: str,
                         name: str) -> Tuple["slicer.vtkMRMLSequenceNode", "slicer.vtkMRMLSequenceBrowserNode"]:
    """A 4-D image file (x, y, slice, time) read by Slicer's own volume sequence reader, as the Sequences module
    loads one: a sequence of scalar volumes indexed by the time axis' values in the file's unit, and a browser
    showing it; returns (sequence, browser)."""
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeSequenceStorageNode")
    storage.SetFileName(str(path))
    sequence.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(sequence):
        raise OSError(f"{path}: Slicer's volume sequence reader could not read it")
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{name} browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    return sequence, browser
