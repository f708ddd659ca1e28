"""Register the built-in sample pair and render, offscreen and through Slicer's own slice logic and displayable
managers (the slicer-core wheel), what a user sees after the run: docs/images/slicer_views.png.

    python docs/render_slicer_views.py

The same views are checked pixel by pixel in Testing/Python/test_logic_slice_views.py.
"""
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicer

from ODERegistrationLib.engine import RegistrationParameters
from ODERegistrationLib.logic import RegistrationLogic, RegistrationRequest
from ODERegistrationLib.logic.headless import add_volume, as_slicer_modules, headless_scene
from ODERegistrationLib.logic.slice_view import OffscreenSliceView, render_qa_views, save_png, show_segmentation
from ODERegistrationLib.sample_data import sample_pair

OUTPUT = Path(__file__).resolve().parent / "images" / "slicer_views.png"


def main() -> None:
    headless = headless_scene()
    slicer.mrmlScene, slicer.modules = headless.scene, as_slicer_modules(headless)
    files = sample_pair()
    read = lambda key: sitk.ReadImage(str(files[key]))
    fixed, moving = add_volume(headless.scene, read("fixed"), "ES"), add_volume(headless.scene, read("moving"), "ED")
    labels = add_volume(headless.scene, read("moving_labels"), "ED labels", "vtkMRMLLabelMapVolumeNode")
    segmentation = headless.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "ED LV blood pool")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(moving)
    slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labels, segmentation)
    segmentation.GetSegmentation().GetNthSegment(0).SetColor(1.0, 0.85, 0.1)
    outputs = RegistrationLogic(headless.scene).run(RegistrationRequest(fixed, moving, RegistrationParameters(),
                                                                        segmentation))
    show_segmentation(segmentation, False)  # the ED contours, at ED: only the propagated ones are shown
    view = OffscreenSliceView(headless.scene, headless.application_logic, size=(420, 420))
    views = render_qa_views(view, fixed, outputs)
    view.close()
    gap = np.full((420, 6, 3), 255, np.uint8)
    save_png(np.concatenate([views["grid"], gap, views["segmentation"], gap, views["jacobian"]], axis=1), str(OUTPUT))
    print(f"{OUTPUT}: {files['moving'].name} registered onto {files['fixed'].name} in "
          f"{outputs.report['seconds']:.1f} s, {outputs.report['folded_voxels']} folded voxels")


if __name__ == "__main__":
    main()
