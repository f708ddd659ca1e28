"""ODERegistration: training-free diffeomorphic multi-resolution registration, as a 3D Slicer module.

This file holds only what needs Qt (module description, panel, self-test); the work is done by
``ODERegistrationLib.logic`` (Qt-free, MRML in and out) and ``ODERegistrationLib.engine`` (torch, no Slicer).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated, Optional

import qt
import slicer
import vtk
from slicer import (vtkMRMLGridTransformNode, vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode,
                    vtkMRMLSequenceNode)
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from ODERegistrationLib.engine.presets import (DEFAULT_PRESET, SEQUENCE_PRESET, load_preset, preset_description,
                                               preset_files, save_preset, user_preset_path)
from ODERegistrationLib.panel import apply_preset, engine_parameter_fields, parameters_from_node
from ODERegistrationLib.sample_data import sample_pair

POLL_INTERVAL_MS = 200
SAMPLE_NAME = "ODERegistration cardiac ED/ES pair"


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
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData() -> None:
    """The shipped CC0 pair in the Sample Data module (two clicks for a new user), as the template does it; the
    files ship with the module, so they are loaded from disk rather than downloaded."""
    import SampleData

    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="ODERegistration", sampleName=SAMPLE_NAME, customDownloader=loadSamplePair,
        thumbnailFileName=str(Path(__file__).parent / "Resources" / "Icons" / "ODERegistration.png"))


def loadSamplePair(source=None) -> list:
    """ES (fixed) and ED (moving) volumes of one Sunnybrook mid-ventricular slice, and both expert segmentations."""
    files = sample_pair()
    nodes = [slicer.util.loadVolume(str(files[key]), {"name": name})
             for key, name in (("fixed", "Sample ES"), ("moving", "Sample ED"))]
    for key, name, volume in (("moving_labels", "Sample ED segmentation", nodes[1]),
                              ("fixed_labels", "Sample ES segmentation", nodes[0])):
        segmentation = slicer.util.loadSegmentation(str(files[key]), {"name": name})
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        nodes.append(segmentation)
    return nodes


def _withEngineParameters(cls):
    """One parameter per engine setting, under the engine's name, with its default and range or choices: the
    engine's dataclass defines them once (ODERegistrationLib/engine/parameters.py)."""
    for name, (kind, default, spec) in engine_parameter_fields().items():
        check = Choice(list(spec.choices)) if spec.choices else WithinRange(spec.minimum, spec.maximum)
        cls.__annotations__[name] = Annotated[kind, check]
        setattr(cls, name, default)
    return cls


@parameterNodeWrapper
@_withEngineParameters
class ODERegistrationParameterNode:
    """Panel state, saved with the scene: the nodes, the preset last chosen and every engine parameter."""

    fixedVolume: vtkMRMLScalarVolumeNode
    movingVolume: vtkMRMLScalarVolumeNode
    movingSegmentation: vtkMRMLSegmentationNode
    fixedSegmentation: vtkMRMLSegmentationNode
    regionROI: vtkMRMLMarkupsROINode
    fixedMask: vtkMRMLSegmentationNode
    movingMask: vtkMRMLSegmentationNode
    preset: str = DEFAULT_PRESET
    forwardTransform: vtkMRMLGridTransformNode
    inverseTransform: vtkMRMLGridTransformNode
    warpedVolume: vtkMRMLScalarVolumeNode
    jacobianVolume: vtkMRMLScalarVolumeNode
    propagatedSegmentation: vtkMRMLSegmentationNode
    volumeSequence: vtkMRMLSequenceNode
    referenceFrame: Annotated[int, WithinRange(0, 100000)] = 0
    sequenceSegmentation: vtkMRMLSegmentationNode
    sequencePreset: str = SEQUENCE_PRESET


class ODERegistrationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: binds the .ui to the parameter node, runs the logic's background job and shows its results."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.sequenceLogic = None
        self.run = None
        self.runLogic = None
        """The logic that started ``run`` (pair or sequence), which also finishes it."""
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
        self.ui.presetComboBox.connect("activated(int)", self.onPresetChosen)
        self.ui.savePresetButton.connect("clicked(bool)", self.onSavePreset)
        self.ui.applySequenceButton.connect("clicked(bool)", self.onApplySequenceButton)
        self.ui.useCurrentFrameButton.connect("clicked(bool)", self.onUseCurrentFrame)
        self.ui.sequencePresetComboBox.connect("activated(int)", self.onSequencePresetChosen)
        self._fillPresets()

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
        """Stop updating the panel, but keep the parameter node: a running job still fills its outputs."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateApplyButton)

    def onSceneStartClose(self, caller, event) -> None:
        self._stopJob()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(ODERegistrationParameterNode(ODERegistrationLogic().getParameterNode()))
        self.ui.presetComboBox.setCurrentText(self._parameterNode.preset)
        self.ui.sequencePresetComboBox.setCurrentText(self._parameterNode.sequencePreset)

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
        running = self.run is not None
        self.ui.applyButton.enabled = ready and not running
        self.ui.applyButton.toolTip = "Run the registration." if ready else "Select a fixed and a moving volume."
        node = self._parameterNode
        sequenceReady = bool(node and node.volumeSequence and node.sequenceSegmentation)
        self.ui.applySequenceButton.enabled = sequenceReady and not running
        self.ui.applySequenceButton.toolTip = ("Propagate the segmentation through every frame." if sequenceReady
                                               else "Select a volume sequence and a segmentation on one frame.")
        self.ui.cancelButton.enabled = running
        for section in (self.ui.inputsCollapsibleButton, self.ui.parametersCollapsibleButton,
                        self.ui.advancedCollapsibleButton, self.ui.outputsCollapsibleButton,
                        self.ui.sequenceCollapsibleButton):
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

    def _userPresetFolder(self) -> Path:
        return Path(slicer.app.slicerUserSettingsFilePath).parent / "ODERegistration" / "Presets"

    def _fillPresets(self) -> None:
        for comboBox in (self.ui.presetComboBox, self.ui.sequencePresetComboBox):
            comboBox.clear()
            for name in preset_files([self._userPresetFolder()]):
                comboBox.addItem(name)
                description = preset_description(name, [self._userPresetFolder()])
                comboBox.setItemData(comboBox.count - 1, description, qt.Qt.ToolTipRole)

    def onPresetChosen(self, index: int) -> None:
        """Every engine parameter takes the preset's value (the same file the CLI's --preset reads)."""
        name = self.ui.presetComboBox.itemText(index)
        with slicer.util.tryWithErrorDisplay(f"Could not apply the preset {name}.", waitCursor=True):
            with slicer.util.NodeModify(self._parameterNode):
                apply_preset(self._parameterNode, name, [self._userPresetFolder()])
                self._parameterNode.preset = name

    def onSavePreset(self) -> None:
        name = qt.QInputDialog.getText(slicer.util.mainWindow(), "Save preset", "Preset name:")
        if not name:
            return
        with slicer.util.tryWithErrorDisplay("Could not save the preset.", waitCursor=True):
            path = user_preset_path(self._userPresetFolder(), name)
            save_preset(parameters_from_node(self._parameterNode), path, "Saved from the ODE Registration panel.")
            self._fillPresets()
            self.ui.presetComboBox.setCurrentText(path.stem)
            self._parameterNode.preset = path.stem

    def onSequencePresetChosen(self, index: int) -> None:
        self._parameterNode.sequencePreset = self.ui.sequencePresetComboBox.itemText(index)

    def onUseCurrentFrame(self) -> None:
        """The frame the browser of the chosen sequence shows now (where the user drew the segmentation)."""
        sequence = self._parameterNode.volumeSequence
        browser = slicer.modules.sequences.logic().GetFirstBrowserNodeForSequenceNode(sequence) if sequence else None
        if browser is not None:
            self._parameterNode.referenceFrame = browser.GetSelectedItemNumber()

    def _dependenciesReady(self) -> bool:
        """True when torch is importable, after offering to install it if it is not."""
        if _missingPackages():
            self.onInstallDependencies()
        return not _missingPackages()

    def onApplyButton(self) -> None:
        self._startJob("registration", self._startRegistration)

    def onApplySequenceButton(self) -> None:
        self._startJob("sequence", self._startSequence)

    def _startJob(self, what: str, start) -> None:
        """Run ``start`` (which returns the logic and the run it started) once torch is there; a request that cannot
        be made is shown to the user, and the panel then follows the run."""
        if not self._dependenciesReady():
            return
        with slicer.util.tryWithErrorDisplay(f"Could not start the {what}.", waitCursor=True):
            self.runLogic, self.run = start()
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = "Starting..."
            self.ui.resultsText.plainText = ""
            self._timer.start()
            self._updateApplyButton()

    def _startRegistration(self):
        from ODERegistrationLib.logic import RegistrationLogic, RegistrationRequest

        node = self._parameterNode
        self.logic = self.logic or RegistrationLogic()
        request = RegistrationRequest(node.fixedVolume, node.movingVolume, parameters_from_node(node),
                                      node.movingSegmentation, node.fixedSegmentation, node.regionROI,
                                      node.fixedMask, node.movingMask)
        return self.logic, self.logic.start(request, self._outputRequest())

    def _startSequence(self):
        from ODERegistrationLib.logic import SequenceLogic, SequenceRequest

        node = self._parameterNode
        self.sequenceLogic = self.sequenceLogic or SequenceLogic()
        parameters = load_preset(node.sequencePreset, [self._userPresetFolder()])
        request = SequenceRequest(node.volumeSequence, node.referenceFrame, node.sequenceSegmentation, parameters)
        return self.sequenceLogic, self.sequenceLogic.start(request)

    def onCancelButton(self) -> None:
        if self.run is not None:
            self.run.job.cancel()
            self.ui.statusLabel.text = "Cancelling..."

    def onPoll(self) -> None:
        """Drain progress; when the job has ended, build the outputs here, on the main thread."""
        from ODERegistrationLib.logic import SequenceOutputs

        updates = self.run.job.poll()
        if updates:
            last = updates[-1]
            self.ui.progressBar.value = int(100 * last.fraction)
            levels = ", ".join(f"L{index} {loss:.4f}" for index, loss in enumerate(last.level_losses))
            self.ui.statusLabel.text = (f"Iteration {last.iteration}/{last.iterations}, loss {last.loss:.4f} "
                                        f"({levels}), {last.elapsed_seconds:.0f} s")
        if self.run.job.running:
            return
        self._timer.stop()
        run, self.run = self.run, None
        try:
            outputs = self.runLogic.finish(run)
        except Exception as error:
            self.ui.statusLabel.text = "Failed."
            slicer.util.errorDisplay(f"Registration failed: {error}")
        else:
            if outputs is None:
                self.ui.statusLabel.text = "Cancelled; the scene was not changed."
            elif isinstance(outputs, SequenceOutputs):
                self.ui.statusLabel.text = "Done."
                self.ui.resultsText.plainText = _sequenceSummary(outputs)
                slicer.modules.plots.logic().ShowChartInLayout(outputs.plot_chart)
            else:
                self._storeOutputs(outputs)
                self.ui.statusLabel.text = "Done."
                self.ui.resultsText.plainText = _summary(outputs)
                self.onShowOverlay()
        self._updateApplyButton()

    def _outputRequest(self):
        """Taken at Apply: the job fills these nodes even if the panel's choices change while it runs."""
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
        from ODERegistrationLib.logic.slice_view import show_grid

        show_grid(transform, show)

    def onShowOverlay(self) -> None:
        node = self._parameterNode
        if node and node.fixedVolume and node.warpedVolume:
            slicer.util.setSliceViewerLayers(background=node.fixedVolume, foreground=node.warpedVolume,
                                             foregroundOpacity=0.5, fit=True)

    def _stopJob(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        if self.run is not None:
            self.run.job.cancel()
            self.run.job.wait(10)
            self.run = None


class ODERegistrationLogic(ScriptedLoadableModuleLogic):
    """Only holds the panel's parameter node (its class name gives the module's name, as Slicer expects); the
    registration logic is ODERegistrationLib.logic.RegistrationLogic (Qt-free)."""


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
    lines += [f"Warning: {warning}" for warning in outputs.warnings]
    for label, scores in report.get("labels", {}).items():
        before, after = scores["before"], scores["after"]
        lines.append(f"{outputs.segment_names.get(label, label)}: Dice {before['dice']:.3f} -> {after['dice']:.3f}, "
                     f"HD95 {before['hausdorff95_mm']:.1f} -> {after['hausdorff95_mm']:.1f} mm")
    return "\n".join(lines)


def _sequenceSummary(outputs) -> str:
    from ODERegistrationLib.engine.pipeline.cardiac_volumes import volumes_in_words

    report = outputs.report
    lines = [f"Time: {report['seconds']:.1f} s on {report['batch']['device']} for {report['phases']} frames "
             f"({report['seconds_per_phase']:.1f} s per frame, {len(report['labelled_slices'])} labelled slices)",
             f"Folded voxels, all frames: {report['folded_voxels']}"]
    lines += [f"Warning: {warning}" for warning in outputs.warnings]
    cycle = report["cycle"]
    lines.append(f"ED frame {cycle['ed_phase']}, ES frame {cycle['es_phase']}: the largest and smallest volume of "
                 f"{outputs.leading_segment}, whose volume changes most")
    for segment, volumes in outputs.segment_volumes.items():
        lines.append(f"{segment}: {volumes_in_words(volumes)}")
    lines.append(f"Scrub {outputs.browser.GetName()} to see the propagated contours on every frame.")
    return "\n".join(lines)


class ODERegistrationTest(ScriptedLoadableModuleTest):
    """Runs in real Slicer (Reload and Test, or ctest): the Sample Data pair and a synthetic one, a few CPU
    iterations, real numbers."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_sample_data_pair_registers()
        self.setUp()
        self.test_registration_maps_the_disk_centre_onto_the_moved_centre()
        self.setUp()
        self.test_cancel_leaves_the_scene_unchanged()
        self.setUp()
        self.test_sequence_propagates_through_every_frame()

    def _disks(self):
        """A disk of radius 12 at (column 30, row 32) in the fixed image, of radius 14 at (34, 34) in the moving."""
        import numpy as np

        rows, columns = np.mgrid[0:64, 0:64]
        fixed = 100.0 * ((rows - 32) ** 2 + (columns - 30) ** 2 < 12 ** 2)
        moving = 100.0 * ((rows - 34) ** 2 + (columns - 34) ** 2 < 14 ** 2)
        return (slicer.util.addVolumeFromArray(fixed[None].astype("float32"), name="fixed"),
                slicer.util.addVolumeFromArray(moving[None].astype("float32"), name="moving"))

    def test_sample_data_pair_registers(self) -> None:
        if _missingPackages():
            self.skipTest(f"not installed: {', '.join(_missingPackages())}")
        import SampleData
        from ODERegistrationLib.engine.parameters import RegistrationParameters
        from ODERegistrationLib.logic import RegistrationLogic, RegistrationRequest

        registerSampleData()
        fixed, moving, movingSegmentation, fixedSegmentation = SampleData.downloadSample(SAMPLE_NAME)
        outputs = RegistrationLogic().run(RegistrationRequest(
            fixed, moving, RegistrationParameters(iterations=40, device="cpu"), movingSegmentation, fixedSegmentation))
        scores = next(iter(outputs.report["labels"].values()))
        self.assertGreater(scores["after"]["dice"], scores["before"]["dice"])
        self.assertEqual(outputs.report["folded_voxels"], 0)

    def test_registration_maps_the_disk_centre_onto_the_moved_centre(self) -> None:
        """The fixed disk's centre must land near the moving disk's centre (4 mm across, 2 mm down), which a map
        close to the identity (more than 3 mm away) fails."""
        if _missingPackages():
            self.skipTest(f"not installed: {', '.join(_missingPackages())}")
        from ODERegistrationLib.engine.parameters import RegistrationParameters
        from ODERegistrationLib.logic import RegistrationLogic, RegistrationRequest

        fixed, moving = self._disks()
        outputs = RegistrationLogic().run(RegistrationRequest(
            fixed, moving, RegistrationParameters(iterations=150, device="cpu", similarity="mse", region="whole")))
        self.assertEqual(outputs.report["folded_voxels"], 0)
        centre = fixed.GetIJKToRASMatrix().MultiplyPoint([30, 32, 0, 1])[:3]
        expected = moving.GetIJKToRASMatrix().MultiplyPoint([34, 34, 0, 1])[:3]
        mapped = outputs.forward_transform.GetTransformFromParent().TransformPoint(centre)
        self.assertLess(max(abs(a - b) for a, b in zip(mapped, expected)), 1.5)

    def test_cancel_leaves_the_scene_unchanged(self) -> None:
        if _missingPackages():
            self.skipTest(f"not installed: {', '.join(_missingPackages())}")
        from ODERegistrationLib.engine.parameters import RegistrationParameters
        from ODERegistrationLib.logic import RegistrationLogic, RegistrationRequest

        fixed, moving = self._disks()
        nodes = slicer.mrmlScene.GetNumberOfNodes()
        logic = RegistrationLogic()
        run = logic.start(RegistrationRequest(fixed, moving, RegistrationParameters(iterations=100000, device="cpu")))
        run.job.cancel()
        run.job.wait(60)
        self.assertIsNone(logic.finish(run))
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodes)

    def test_sequence_propagates_through_every_frame(self) -> None:
        """A disk that shrinks and grows again over three frames: the segmentation of frame 0 comes back in two
        synchronized sequences, the smallest volume at frame 1, and a table and a chart."""
        if _missingPackages():
            self.skipTest(f"not installed: {', '.join(_missingPackages())}")
        import numpy as np
        import SimpleITK as sitk
        from ODERegistrationLib.logic import SequenceLogic, SequenceRequest
        from ODERegistrationLib.logic.headless import add_volume

        rows, columns = np.mgrid[0:64, 0:64]
        disks = [100.0 * ((rows - 32) ** 2 + (columns - 32) ** 2 < radius ** 2) for radius in (14, 9, 12)]
        frames = [sitk.JoinSeries(sitk.GetImageFromArray(disk.astype("float32"))) for disk in disks]
        path = str(Path(slicer.util.tempDirectory()) / "disks.nii.gz")
        sitk.WriteImage(sitk.JoinSeries(frames, 0.0, 40.0), path)
        sequence = slicer.util.loadSequence(path)
        browser = slicer.modules.sequences.logic().GetFirstBrowserNodeForSequenceNode(sequence)
        labels = add_volume(slicer.mrmlScene, sitk.Cast(frames[0] > 50, sitk.sitkUInt8), "labels",
                            "vtkMRMLLabelMapVolumeNode")
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "disk")
        slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labels, segmentation)
        outputs = SequenceLogic().run(SequenceRequest(sequence, 0, segmentation))
        self.assertTrue(browser.IsSynchronizedSequenceNode(outputs.segmentation_sequence.GetID()))
        self.assertTrue(browser.IsSynchronizedSequenceNode(outputs.transform_sequence.GetID()))
        self.assertEqual(outputs.segmentation_sequence.GetNumberOfDataNodes(), 3)
        cycle = outputs.report["cycle"]
        self.assertEqual((cycle["ed_phase"], cycle["es_phase"]), (0, 1))
        self.assertEqual(outputs.table.GetNumberOfRows(), 3)
        self.assertEqual(outputs.report["folded_voxels"], 0)
