"""Benchmark of the engine against ANTs SyN, elastix and SimpleITK demons (not part of the installed package)."""
