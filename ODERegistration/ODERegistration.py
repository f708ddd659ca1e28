"""ODERegistration: training-free diffeomorphic multi-resolution registration, as a 3D Slicer module.

This file holds only what needs Qt (module description, panel, self-test); the work is done by
``ODERegistrationLib.logic`` (Qt-free, MRML in and out) and ``ODERegistrationLib.engine`` (torch, no Slicer).
"""
from __future__ import annotations

import importlib.util
from typing import Annotated, Optional

import qt
import slicer
import vtk
from slicer import vtkMRMLGridTransformNode, vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from ODERegistrationLib.engine.parameters import DEVICES, MODES, SIMILARITIES, RegistrationParameters

DEFAULTS = RegistrationParameters()
PANEL_REGIONS = ("auto", "roi", "whole")
"""The engine's regions, plus ``roi``: the box of a Markups ROI node chosen in the panel."""
POLL_INTERVAL_MS = 200


class ODERegistration(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "ODE Registration"
        self.parent.categories = ["Registration"]
        self.parent.dependencies = []
        self.parent.contributors = ["ODERegistration developers"]
        self.parent.helpText = (
            "Deformable registration of two images (2-D, 3-D or thick-slice stacks) by a small network fitted to "
            "this pair only: no training data, no downloaded weights. The transform is diffeomorphic (no folding) "
            "and comes with its inverse, a Jacobian determinant map and propagated segmentations.<br>"
            "The warped volume is resampled on the fixed volume's grid. Hardening the transform on the moving "
            "volume gives the same alignment on the moving volume's own grid.")
        self.parent.acknowledgementText = (
            "Built-in sample: Sunnybrook Cardiac Data (CC0), Radau et al., MIDAS Journal 2009.")


@parameterNodeWrapper
class ODERegistrationParameterNode:
    """Panel state, saved with the scene."""

    fixedVolume: vtkMRMLScalarVolumeNode
    movingVolume: vtkMRMLScalarVolumeNode
    movingSegmentation: vtkMRMLSegmentationNode
    fixedSegmentation: vtkMRMLSegmentationNode
    regionMode: Annotated[str, Choice(list(PANEL_REGIONS))] = DEFAULTS.region
    regionROI: vtkMRMLMarkupsROINode
    fixedMask: vtkMRMLSegmentationNode
    movingMask: vtkMRMLSegmentationNode
    iterations: Annotated[int, WithinRange(1, 100000)] = DEFAULTS.iterations
    iterations3D: Annotated[int, WithinRange(1, 100000)] = DEFAULTS.iterations_3d
    levels: Annotated[int, WithinRange(1, 6)] = DEFAULTS.levels
    similarity: Annotated[str, Choice(list(SIMILARITIES))] = DEFAULTS.similarity
    mode: Annotated[str, Choice(list(MODES))] = DEFAULTS.mode
    device: Annotated[str, Choice(list(DEVICES))] = DEFAULTS.device
    learningRate: float = DEFAULTS.learning_rate
    regularizationLambda: float = DEFAULTS.regularization_lambda
    smoothingSigmaMm: Annotated[float, WithinRange(0.0, 50.0)] = DEFAULTS.smoothing_sigma_mm
    regionMarginMm: Annotated[float, WithinRange(0.0, 500.0)] = DEFAULTS.region_margin_mm
    netDownsampling: Annotated[int, WithinRange(1, 16)] = DEFAULTS.net_downsampling
    workingSpacingMm: Annotated[float, WithinRange(0.0, 20.0)] = DEFAULTS.working_spacing_mm
    foldingWeight: Annotated[float, WithinRange(0.0, 10000.0)] = DEFAULTS.folding_weight
    seed: int = DEFAULTS.seed
    forwardTransform: vtkMRMLGridTransformNode
    inverseTransform: vtkMRMLGridTransformNode
    warpedVolume: vtkMRMLScalarVolumeNode
    jacobianVolume: vtkMRMLScalarVolumeNode
    propagatedSegmentation: vtkMRMLSegmentationNode

    def registration_parameters(self) -> RegistrationParameters:
        return RegistrationParameters(
            iterations=self.iterations, iterations_3d=self.iterations3D, levels=self.levels, similarity=self.similarity,
            mode=self.mode, device=self.device, learning_rate=self.learningRate, regularization_lambda=self.regularizationLambda,
            smoothing_sigma_mm=self.smoothingSigmaMm, net_downsampling=self.netDownsampling,
            working_spacing_mm=self.workingSpacingMm,
            folding_weight=self.foldingWeight, seed=self.seed,
            region="whole" if self.regionMode == "whole" else "auto", region_margin_mm=self.regionMarginMm)

    def region_roi(self):
        """The ROI node when the region is to come from it (the engine then uses its box)."""
        return self.regionROI if self.regionMode == "roi" else None


class ODERegistrationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: binds the .ui to the parameter node, runs the logic's background job and shows its results."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.job = None
        self.request = None
        self._parameterNode: Optional[ODERegistrationParameterNode] = None
        self._parameterNodeGuiTag = None
        self._timer = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/ODERegistration.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self.onPoll)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.installTorchButton.connect("clicked(bool)", self.onInstallDependencies)
        self.ui.showGridCheckBox.connect("toggled(bool)", self.onShowGrid)
        self.ui.showOverlayButton.connect("clicked(bool)", self.onShowOverlay)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self._showDependencyStatus()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self._stopJob()
        self.removeObservers()
        self.setParameterNode(None)

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self._stopJob()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(ODERegistrationParameterNode(ODERegistrationParameterLogic().getParameterNode()))

    def setParameterNode(self, parameterNode: Optional[ODERegistrationParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateApplyButton)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateApplyButton)
            self._updateApplyButton()

    def _updateApplyButton(self, caller=None, event=None) -> None:
        ready = bool(self._parameterNode and self._parameterNode.fixedVolume and self._parameterNode.movingVolume)
        running = self.job is not None
        self.ui.applyButton.enabled = ready and not running
        self.ui.applyButton.toolTip = "Run the registration." if ready else "Select a fixed and a moving volume."
        self.ui.cancelButton.enabled = running
        for section in (self.ui.inputsCollapsibleButton, self.ui.parametersCollapsibleButton,
                        self.ui.advancedCollapsibleButton, self.ui.outputsCollapsibleButton):
            section.enabled = not running

    def _showDependencyStatus(self) -> None:
        missing = _missingPackages()
        self.ui.torchStatusLabel.visible = self.ui.installTorchButton.visible = bool(missing)
        if missing:
            self.ui.torchStatusLabel.text = (f"This module needs {', '.join(missing)}, which is not installed. "
                                             "Install it once (it may take a few minutes).")

    def onInstallDependencies(self) -> None:
        """torch through the PyTorch extension when present (it picks the right CUDA build), else pip."""
        if importlib.util.find_spec("torch") is None:
            try:
                import PyTorchUtils
            except ImportError:
                if not slicer.util.confirmOkCancelDisplay("Install PyTorch (CPU or CUDA build chosen by pip)?"):
                    return
                slicer.util.pip_install("torch")
            else:
                if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True) is None:
                    return
        self._showDependencyStatus()

    def onApplyButton(self) -> None:
        if _missingPackages():
            self.onInstallDependencies()
            if _missingPackages():
                return
        from ODERegistrationLib.logic import ODERegistrationLogic, RegistrationRequest

        node = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Could not start the registration.", waitCursor=True):
            self.logic = self.logic or ODERegistrationLogic()
            self.request = RegistrationRequest(node.fixedVolume, node.movingVolume, node.registration_parameters(),
                                               node.movingSegmentation, node.fixedSegmentation, node.region_roi(),
                                               node.fixedMask, node.movingMask)
            self.job = self.logic.start(self.request)
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = "Starting..."
            self.ui.resultsText.plainText = ""
            self._timer.start()
        self._updateApplyButton()

    def onCancelButton(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.ui.statusLabel.text = "Cancelling..."

    def onPoll(self) -> None:
        """Drain progress; when the job has ended, build the outputs here, on the main thread."""
        updates = self.job.poll()
        if updates:
            last = updates[-1]
            self.ui.progressBar.value = int(100 * last.fraction)
            levels = ", ".join(f"L{index} {loss:.4f}" for index, loss in enumerate(last.level_losses))
            self.ui.statusLabel.text = (f"Iteration {last.iteration}/{last.iterations}, loss {last.loss:.4f} "
                                        f"({levels}), {last.elapsed_seconds:.0f} s")
        if self.job.running:
            return
        self._timer.stop()
        job, self.job = self.job, None
        try:
            outputs = self.logic.finish(job, self.request, self._outputRequest())
        except Exception as error:
            self.ui.statusLabel.text = "Failed."
            slicer.util.errorDisplay(f"Registration failed: {error}")
        else:
            if outputs is None:
                self.ui.statusLabel.text = "Cancelled; the scene was not changed."
            else:
                self._storeOutputs(outputs)
                self.ui.statusLabel.text = "Done."
                self.ui.resultsText.plainText = _summary(outputs)
                self.onShowOverlay()
        self._updateApplyButton()

    def _outputRequest(self):
        from ODERegistrationLib.logic import CREATE, OutputRequest

        node = self._parameterNode
        return OutputRequest(node.forwardTransform or CREATE, node.inverseTransform or CREATE,
                             node.warpedVolume or CREATE, node.jacobianVolume or CREATE,
                             node.propagatedSegmentation or CREATE)

    def _storeOutputs(self, outputs) -> None:
        node = self._parameterNode
        node.forwardTransform = outputs.forward_transform
        node.inverseTransform = outputs.inverse_transform
        node.warpedVolume = outputs.warped_volume
        node.jacobianVolume = outputs.jacobian_volume
        if outputs.propagated_segmentation is not None:
            node.propagatedSegmentation = outputs.propagated_segmentation
        self.onShowGrid(self.ui.showGridCheckBox.checked)

    def onShowGrid(self, show: bool) -> None:
        transform = self._parameterNode.forwardTransform if self._parameterNode else None
        if transform is None:
            return
        transform.CreateDefaultDisplayNodes()
        display = transform.GetDisplayNode()
        display.SetVisualizationMode(display.VIS_MODE_GRID)
        display.SetVisibility2D(show)
        display.SetVisibility(show)

    def onShowOverlay(self) -> None:
        node = self._parameterNode
        if node and node.fixedVolume and node.warpedVolume:
            slicer.util.setSliceViewerLayers(background=node.fixedVolume, foreground=node.warpedVolume,
                                             foregroundOpacity=0.5, fit=True)

    def _stopJob(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        if self.job is not None:
            self.job.cancel()
            self.job.wait(10)
            self.job = None


class ODERegistrationParameterLogic(ScriptedLoadableModuleLogic):
    """Only holds the panel's parameter node; the registration logic is ODERegistrationLib.logic (Qt-free)."""


def _missingPackages() -> list:
    """The engine needs only torch beyond what Slicer ships (numpy, SimpleITK)."""
    return [name for name in ["torch"] if importlib.util.find_spec(name) is None]


def _summary(outputs) -> str:
    report = outputs.report
    lines = [f"Time: {report['seconds']:.1f} s on {report['device']} ({report['mode']}, {report['iterations']} iterations)",
             f"Folded voxels: {report['folded_voxels']} ({100 * report['folded_fraction']:.3f} %)",
             f"det J: min {report['min_jacobian']:.3f}, max {report['max_jacobian']:.3f}",
             f"Inverse consistency: {report['inverse_consistency_mm']:.3f} mm mean round trip "
             f"({report['inverse_folded_voxels']} folded voxels in the inverse)",
             f"Region: {report['region']['source']}, {report['region']['index_size']} voxels"]
    lines += [f"Warning: {warning}" for warning in report["warnings"]]
    for label, scores in report.get("labels", {}).items():
        before, after = scores["before"], scores["after"]
        lines.append(f"{outputs.segment_names.get(label, label)}: Dice {before['dice']:.3f} -> {after['dice']:.3f}, "
                     f"HD95 {before['hausdorff95_mm']:.1f} -> {after['hausdorff95_mm']:.1f} mm")
    return "\n".join(lines)


class ODERegistrationTest(ScriptedLoadableModuleTest):
    """Runs in real Slicer (Reload and Test, or ctest): a synthetic pair, a few CPU iterations, real numbers."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_registration_aligns_a_shifted_disk()
        self.setUp()
        self.test_cancel_leaves_the_scene_unchanged()

    def _pair(self):
        import numpy as np

        rows, columns = np.mgrid[0:64, 0:64]
        fixed = 100.0 * ((rows - 32) ** 2 + (columns - 30) ** 2 < 12 ** 2)
        moving = 100.0 * ((rows - 34) ** 2 + (columns - 34) ** 2 < 14 ** 2)
        fixedNode = slicer.util.addVolumeFromArray(fixed[None].astype("float32"), name="fixed")
        movingNode = slicer.util.addVolumeFromArray(moving[None].astype("float32"), name="moving")
        labels = slicer.util.addVolumeFromArray((moving[None] > 0).astype("uint8"), name="labels",
                                                nodeClassName="vtkMRMLLabelMapVolumeNode")
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "disk")
        slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labels, segmentation)
        slicer.mrmlScene.RemoveNode(labels)
        return fixedNode, movingNode, segmentation

    def test_registration_aligns_a_shifted_disk(self) -> None:
        if _missingPackages():
            self.skipTest(f"not installed: {', '.join(_missingPackages())}")
        from ODERegistrationLib.logic import ODERegistrationLogic, RegistrationRequest

        fixed, moving, segmentation = self._pair()
        fixedSegmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "fixed disk")
        fixedLabels = slicer.util.addVolumeFromArray((slicer.util.arrayFromVolume(fixed) > 0).astype("uint8"),
                                                     nodeClassName="vtkMRMLLabelMapVolumeNode")
        slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(fixedLabels, fixedSegmentation)
        parameters = RegistrationParameters(iterations=60, device="cpu", similarity="mse")
        outputs = ODERegistrationLogic().run(
            RegistrationRequest(fixed, moving, parameters, segmentation, fixedSegmentation))
        scores = next(iter(outputs.report["labels"].values()))
        self.assertGreater(scores["after"]["dice"], scores["before"]["dice"] + 0.05)
        self.assertEqual(outputs.report["folded_voxels"], 0)
        probe = [0.0, 0.0, 0.0]
        mapped = outputs.forward_transform.GetTransformFromParent().TransformPoint(probe)
        self.assertLess(max(abs(a - b) for a, b in zip(mapped, probe)), 20.0)

    def test_cancel_leaves_the_scene_unchanged(self) -> None:
        if _missingPackages():
            self.skipTest(f"not installed: {', '.join(_missingPackages())}")
        from ODERegistrationLib.logic import ODERegistrationLogic, RegistrationRequest

        fixed, moving, _ = self._pair()
        nodes = slicer.mrmlScene.GetNumberOfNodes()
        logic = ODERegistrationLogic()
        request = RegistrationRequest(fixed, moving, RegistrationParameters(iterations=100000, device="cpu"))
        job = logic.start(request)
        job.cancel()
        job.wait(60)
        self.assertIsNone(logic.finish(job, request))
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodes)
