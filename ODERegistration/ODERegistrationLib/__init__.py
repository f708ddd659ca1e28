"""ODERegistration library: the engine (pure PyTorch/SimpleITK), the command line and the Qt-free Slicer logic.

Layers, from the bottom up:

- ``engine``: the registration method, metrics and file I/O; imports torch, numpy and SimpleITK only.
- ``cli``: the ``oderegistration`` command, a thin shell around the engine.
- ``logic``: turns MRML nodes into engine inputs and engine outputs into MRML nodes (imports slicer, never Qt).
"""
