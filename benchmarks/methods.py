"""The registration methods compared, each returning displacement fields on the fixed grid (ITK convention, LPS).

Every method is scored by the same code afterwards (label propagation, det J, inverse consistency), so only the
registration itself differs. Peers are optional: a method whose package is missing is reported, not run.
"""
from __future__ import annotations

import importlib.util
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import numpy as np
import SimpleITK as sitk


@dataclass
class MethodOutput:
    forward: sitk.Image
    """Resamples moving onto fixed: warped(x) = moving(x + U(x))."""
    backward: Optional[sitk.Image]
    """Resamples fixed onto moving, when the method gives an inverse."""
    seconds: float
    """Wall time of the registration alone (no I/O, no scoring)."""


@dataclass(frozen=True)
class Method:
    name: str
    requires: str
    """Python module that must be importable."""
    run: Callable[[sitk.Image, sitk.Image, dict], MethodOutput]

    def missing(self) -> Optional[str]:
        return None if importlib.util.find_spec(self.requires) else f"{self.name}: package {self.requires!r} not installed"


def run_ode(fixed: sitk.Image, moving: sitk.Image, options: dict) -> MethodOutput:
    from ODERegistrationLib.engine import register_images

    result = register_images(fixed, moving, options["ode_parameters"], moving_labels=options.get("moving_labels"))
    return MethodOutput(result.forward, result.backward, result.report["seconds"])


def ants_syn(transform_type: str) -> Callable[[sitk.Image, sitk.Image, dict], MethodOutput]:
    def run(fixed: sitk.Image, moving: sitk.Image, options: dict) -> MethodOutput:
        import ants

        with tempfile.TemporaryDirectory() as folder:
            paths = [os.path.join(folder, name) for name in ("fixed.nii.gz", "moving.nii.gz")]
            for image, path in zip((fixed, moving), paths):
                sitk.WriteImage(image, path)
            fixed_ants, moving_ants = (ants.image_read(path) for path in paths)
            start = time.perf_counter()
            result = ants.registration(fixed_ants, moving_ants, type_of_transform=transform_type,
                                       outprefix=os.path.join(folder, "syn_"))
            seconds = time.perf_counter() - start
            forward = _dense_field(result["fwdtransforms"], fixed)
            backward = _dense_field(result["invtransforms"], fixed, invert_affine=True)
        return MethodOutput(forward, backward, seconds)
    return run


def _dense_field(files, reference: sitk.Image, invert_affine: bool = False) -> sitk.Image:
    """ANTs transform files -> one displacement field on the reference grid.

    ANTs lists the forward transforms as [warp, affine] and the inverse ones as [affine (to invert), inverse warp];
    a SimpleITK CompositeTransform of the reversed list reproduces ants.apply_transforms (checked on the forward
    pair: mean difference 4e-5 against ANTs' own warped image).
    """
    transforms = []
    for path in files:
        if path.endswith(".mat"):
            transform = sitk.ReadTransform(path)
            transforms.append(transform.GetInverse() if invert_affine else transform)
        else:
            transforms.append(sitk.DisplacementFieldTransform(sitk.ReadImage(path, sitk.sitkVectorFloat64)))
    return sitk.TransformToDisplacementField(sitk.CompositeTransform(transforms[::-1]), sitk.sitkVectorFloat64,
                                             reference.GetSize(), reference.GetOrigin(), reference.GetSpacing(),
                                             reference.GetDirection())


def elastix(grid_spacing_mm: Optional[float] = None) -> Callable[[sitk.Image, sitk.Image, dict], MethodOutput]:
    """elastix with its default B-spline parameter map (its final grid 10 mm apart, or ``grid_spacing_mm``);
    transformix gives the dense field on the fixed grid."""
    def run(fixed: sitk.Image, moving: sitk.Image, options: dict) -> MethodOutput:
        import itk

        fixed_itk, moving_itk = _to_itk(fixed), _to_itk(moving)
        parameters = itk.ParameterObject.New()
        parameter_map = parameters.GetDefaultParameterMap("bspline")
        if grid_spacing_mm is not None:
            parameter_map["FinalGridSpacingInPhysicalUnits"] = [str(grid_spacing_mm)]
        parameters.AddParameterMap(parameter_map)
        start = time.perf_counter()
        _, transform_parameters = itk.elastix_registration_method(fixed_itk, moving_itk, parameter_object=parameters,
                                                                  log_to_console=False)
        seconds = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as folder:  # transformix writes deformationField.nii into the cwd
            previous = os.getcwd()
            os.chdir(folder)
            try:
                field_itk = itk.transformix_deformation_field(moving_itk, transform_parameters)
            finally:
                os.chdir(previous)
        field = sitk.GetImageFromArray(np.asarray(itk.array_from_image(field_itk), dtype=np.float64), isVector=True)
        field.CopyInformation(fixed)
        return MethodOutput(field, None, seconds)
    return run


def _to_itk(image: sitk.Image):
    import itk

    converted = itk.image_from_array(sitk.GetArrayFromImage(sitk.Cast(image, sitk.sitkFloat32)))
    converted.SetSpacing(image.GetSpacing())
    converted.SetOrigin(image.GetOrigin())
    dim = image.GetDimension()
    converted.SetDirection(itk.matrix_from_array(np.asarray(image.GetDirection()).reshape(dim, dim)))
    return converted


def demons(sigma: float = 1.5, iterations: int = 150) -> Callable[[sitk.Image, sitk.Image, dict], MethodOutput]:
    """SimpleITK diffeomorphic demons on 2 levels (by default 150 iterations, sigma 1.5: the data README's
    reference)."""
    def run(fixed: sitk.Image, moving: sitk.Image, options: dict) -> MethodOutput:
        fixed_float = sitk.Cast(fixed, sitk.sitkFloat32)
        moving_float = sitk.HistogramMatching(sitk.Resample(sitk.Cast(moving, sitk.sitkFloat32), fixed_float),
                                              fixed_float)
        registration = sitk.DiffeomorphicDemonsRegistrationFilter()
        registration.SetNumberOfIterations(iterations)
        registration.SetStandardDeviations(sigma)
        start = time.perf_counter()
        halved = [2, 2] + [1] * (fixed.GetDimension() - 2)  # in-plane only: a stack keeps its slices
        coarse = [sitk.Shrink(image, halved) for image in (fixed_float, moving_float)]
        initial = registration.Execute(*coarse)
        initial = sitk.Resample(initial, fixed_float, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkVectorFloat64)
        field = registration.Execute(fixed_float, moving_float, initial)
        seconds = time.perf_counter() - start
        field = sitk.Cast(field, sitk.sitkVectorFloat64)
        field.CopyInformation(fixed)
        return MethodOutput(field, None, seconds)
    return run


METHODS: Dict[str, Method] = {method.name: method for method in [
    Method("ode", "torch", run_ode),
    Method("syn", "ants", ants_syn("SyN")),
    Method("synonly", "ants", ants_syn("SyNOnly")),
    Method("syncc", "ants", ants_syn("SyNCC")),  # cross-correlation: SyN at its best here (peer_settings.py)
    Method("elastix", "itk", elastix()),
    Method("demons", "SimpleITK", demons()),
]}
PEERS = [name for name in METHODS if name != "ode"]
"""The methods this engine is compared with."""
