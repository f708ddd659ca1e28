"""The Qt-free Slicer logic: MRML nodes <-> engine. Imports slicer (MRML, slicer.util), vtk, numpy, torch; never Qt."""
from .output_nodes import CREATE, OutputRequest, RegistrationOutputs
from .registration_logic import RegistrationLogic, RegistrationRequest, RegistrationRun
from .sequence_logic import SequenceLogic, SequenceOutputs, SequenceRequest, SequenceRun

__all__ = ["CREATE", "OutputRequest", "RegistrationLogic", "RegistrationOutputs", "RegistrationRequest", "RegistrationRun",
           "SequenceLogic", "SequenceOutputs", "SequenceRequest", "SequenceRun"]
