"""The Qt-free Slicer logic: MRML nodes <-> engine. Imports slicer (MRML, slicer.util), vtk, numpy, torch; never Qt."""
from .output_nodes import CREATE, OutputRequest, RegistrationOutputs
from .registration_logic import RegistrationLogic, RegistrationRequest, RegistrationRun

__all__ = ["CREATE", "OutputRequest", "RegistrationLogic", "RegistrationOutputs", "RegistrationRequest", "RegistrationRun"]
