"""RegistrationLogic: MRML nodes in, MRML nodes out; the engine does the work.

Qt-free on purpose (imports slicer's MRML classes, vtk, numpy, torch), so it runs in tests against the real MRML
of the slicer-core wheel and in batch scripts, like the logic of Slicer's scripted-module template.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import List, Optional

import SimpleITK as sitk
import slicer

from ..engine import InputError, RegistrationParameters, register_images
from .geometry import image_from_volume, roi_corners_lps
from .job import EngineJob, EngineTask
from .output_nodes import CREATE, OutputRequest, RegistrationOutputs, build_outputs
from .segmentations import labels_from_segmentation, segment_names


@dataclass
class RegistrationRequest:
    """What to register: node references and parameters."""

    fixed_volume: object
    moving_volume: object
    parameters: RegistrationParameters = RegistrationParameters()
    moving_segmentation: Optional[object] = None
    """Propagated onto the fixed volume."""
    fixed_segmentation: Optional[object] = None
    """Used only to score Dice and Hausdorff per segment."""
    region_roi: Optional[object] = None
    """A Markups ROI node: the map is fitted in the fixed volume's box that covers it (else ``parameters.region``)."""
    fixed_mask: Optional[object] = None
    """Segmentation on the fixed volume: the similarity counts only voxels inside one of its segments."""
    moving_mask: Optional[object] = None
    """Likewise on the moving volume."""


@dataclass
class EngineInputs:
    """A snapshot of everything the engine needs, taken on the main thread."""

    fixed: sitk.Image
    moving: sitk.Image
    parameters: RegistrationParameters
    moving_labels: Optional[sitk.Image] = None
    fixed_labels: Optional[sitk.Image] = None
    fixed_mask: Optional[sitk.Image] = None
    moving_mask: Optional[sitk.Image] = None
    region_corners: Optional[List[List[float]]] = None
    """Physical LPS points whose box on the fixed grid is the region (an ROI node's corners)."""
    names: dict = field(default_factory=dict)

    def task(self, warp_moving: bool) -> EngineTask:
        """The engine's run; with ``warp_moving`` the warped image is resampled there too, in the background,
        rather than on the main thread when its node is filled."""
        def run(progress, cancel):
            result = register_images(
                self.fixed, self.moving, self.parameters, moving_labels=self.moving_labels,
                fixed_labels=self.fixed_labels, progress=progress, cancel=cancel, names=self.names,
                fixed_mask=self.fixed_mask, moving_mask=self.moving_mask, region_corners=self.region_corners)
            if warp_moving:  # register_images checked for a cancel just before it returned
                result.resample_warped_now()
            return result
        return run


class RegistrationLogic:
    """Prepare inputs, run the engine (blocking or in a background job) and build the output nodes."""

    def __init__(self, scene=None) -> None:
        self.scene = scene if scene is not None else slicer.mrmlScene

    def prepare(self, request: RegistrationRequest) -> EngineInputs:
        """Snapshot the nodes into plain images on the main thread; nothing in the scene changes."""
        if request.fixed_volume is None or request.moving_volume is None:
            raise InputError("select both a fixed and a moving volume")
        fixed, moving = request.fixed_volume, request.moving_volume
        inputs = EngineInputs(image_from_volume(fixed), image_from_volume(moving), request.parameters,
                              names={"fixed": fixed.GetName(), "moving": moving.GetName()})
        if request.moving_segmentation is not None:
            inputs.moving_labels = labels_from_segmentation(request.moving_segmentation, moving)
            inputs.names["moving_labels"] = request.moving_segmentation.GetName()
        if request.fixed_segmentation is not None:
            moving_names = segment_names(request.moving_segmentation) if request.moving_segmentation else None
            inputs.fixed_labels = labels_from_segmentation(request.fixed_segmentation, fixed, moving_names)
            inputs.names["fixed_labels"] = request.fixed_segmentation.GetName()
        for key, segmentation, volume in (("fixed_mask", request.fixed_mask, fixed),
                                          ("moving_mask", request.moving_mask, moving)):
            if segmentation is not None:
                setattr(inputs, key, labels_from_segmentation(segmentation, volume, exclusive=False))
                inputs.names[key] = segmentation.GetName()
        if request.region_roi is not None:
            inputs.region_corners = roi_corners_lps(request.region_roi)
            inputs.names["region_corners"] = request.region_roi.GetName()
        return inputs

    def start(self, request: RegistrationRequest, outputs: OutputRequest = OutputRequest()) -> "RegistrationRun":
        """Start a background job; poll ``run.job``, then call :meth:`finish` on the main thread."""
        run = self._new_run(request, outputs)
        run.job.start()
        return run

    def _new_run(self, request: RegistrationRequest, outputs: OutputRequest) -> "RegistrationRun":
        refuse_clashing_outputs(request, outputs)
        inputs = self.prepare(request)
        return RegistrationRun(EngineJob(inputs.task(warp_moving=outputs.warped_volume is not None),
                                         inputs.parameters.device), request, outputs)

    def finish(self, run: "RegistrationRun") -> Optional[RegistrationOutputs]:
        """Build the output nodes of a finished run; None when it was cancelled (the scene stays untouched)."""
        job = run.job
        if job.error is not None:
            raise job.error
        if job.cancelled or job.result is None:
            return None
        return build_outputs(self.scene, job.result, run.outputs, run.request.fixed_volume,
                             run.request.moving_volume, run.request.moving_segmentation)

    def run(self, request: RegistrationRequest, outputs: OutputRequest = OutputRequest()) -> RegistrationOutputs:
        """Blocking run, for scripts and tests."""
        run = self._new_run(request, outputs)
        run.job.run()
        return self.finish(run)


def refuse_clashing_outputs(request: RegistrationRequest, outputs: OutputRequest) -> None:
    """An output node that is also an input would be overwritten by the run (the moving volume chosen as the warped
    volume, the moving segmentation as the propagated one), and one node chosen for two outputs would keep only the
    last (the det J map over the warped volume): both refused before any work, so no node changes."""
    inputs = {"fixed volume": request.fixed_volume, "moving volume": request.moving_volume,
              "moving segmentation": request.moving_segmentation, "fixed segmentation": request.fixed_segmentation,
              "region ROI": request.region_roi, "fixed mask": request.fixed_mask, "moving mask": request.moving_mask}
    taken = {node.GetID(): role for role, node in inputs.items() if node is not None}
    chosen = {}
    for output in fields(outputs):
        node, role = getattr(outputs, output.name), output.name.replace("_", " ")
        if node is None or node == CREATE:
            continue
        if node.GetID() in taken:
            raise InputError(f"{role} output: is the {taken[node.GetID()]} '{node.GetName()}', which the run would "
                             "overwrite; choose another node or a new one")
        if node.GetID() in chosen:
            raise InputError(f"{role} output: is '{node.GetName()}', chosen for the {chosen[node.GetID()]} output "
                             "too, which it would overwrite; choose a node for each, or new ones")
        chosen[node.GetID()] = role


@dataclass
class RegistrationRun:
    """A started job with everything needed to finish it, fixed when it started: the panel that started it may
    have been left, or its choices changed, by the time the job ends."""

    job: EngineJob
    request: RegistrationRequest
    outputs: OutputRequest
