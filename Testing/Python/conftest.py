"""Shared test fixtures: the real cardiac data in ../shared/data, made small enough for a 2-core CI."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

REPOSITORY = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("ODEREGISTRATION_TEST_DATA", REPOSITORY.parent / "shared" / "data"))


def shrink_pair(pair: dict, factor: int) -> dict:
    """Divide the in-plane resolution by ``factor`` (bin averaging); labels follow by nearest neighbour."""
    small = {}
    for image_key in ("fixed", "moving"):
        image = pair[image_key]
        factors = [factor, factor] + [1] * (image.GetDimension() - 2)
        small[image_key] = sitk.BinShrink(sitk.Cast(image, sitk.sitkFloat32), factors)
        small[f"{image_key}_labels"] = sitk.Resample(pair[f"{image_key}_labels"], small[image_key], sitk.Transform(),
                                                     sitk.sitkNearestNeighbor, 0)
    return small


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "sunnybrook" / "manifest.json").is_file():
        pytest.fail(f"the shared test data is missing: expected {DATA} (set ODEREGISTRATION_TEST_DATA)")
    return DATA


def load_pair(data_dir: Path, dataset: str, pair_id: str) -> dict:
    """A manifest pair as SimpleITK images: fixed, moving, fixed_labels, moving_labels."""
    manifest = json.loads((data_dir / dataset / "manifest.json").read_text())
    pair = next(p for p in manifest["pairs"] if p["id"] == pair_id)
    return {key: sitk.ReadImage(str(data_dir / dataset / pair[key]))
            for key in ("fixed", "moving", "fixed_labels", "moving_labels")}


@pytest.fixture(scope="session")
def small_2d_pair(data_dir) -> dict:
    """ACDC patient 067 (normal heart) mid-ventricular ES/ED pair at half resolution (116 x 128)."""
    return shrink_pair(load_pair(data_dir, "acdc", "acdc_patient067_2d_mid"), 2)


CINE = DATA / "sunnybrook" / "cine"
CINE_PHASES = (7, 12, 18)  # ES, mid-diastole, ED (the reference, item 2)
CINE_SLICES = (4, 5)


def cine_piece(image: sitk.Image, slices=CINE_SLICES) -> sitk.Image:
    """Some slices (by default two mid-ventricular ones) of the development cine at three phases, at half
    resolution: 128 x 128 x 2 x 3."""
    volumes = [sitk.Shrink(image[:, :, slices[0]:slices[-1] + 1, t], [2, 2, 1]) for t in CINE_PHASES]
    return sitk.JoinSeries(volumes, 0.0, 40.0)


@pytest.fixture(scope="session")
def cine_piece_files(tmp_path_factory, data_dir) -> dict:
    """The piece of the cine and of its expert labels (ED and ES contours) as 4-D files: "cine", "labels"."""
    folder = tmp_path_factory.mktemp("cine")
    paths = {}
    for key, name in (("cine", "SCD0000101_cine.nii.gz"), ("labels", "SCD0000101_cine_labels.nii.gz")):
        paths[key] = folder / f"{key}.nii.gz"
        sitk.WriteImage(cine_piece(sitk.ReadImage(str(CINE / name))), str(paths[key]))
    return paths


@pytest.fixture
def mrml(monkeypatch, request):
    """A fresh, real MRML scene with the module logics the Logic needs (slicer-core wheel: no Qt, no application).

    ``slicer.mrmlScene`` and ``slicer.modules.<name>.logic()`` point at it for slicer.util; a VTK ERROR printed
    during the test fails it, unless the test is marked ``allow_vtk_errors``.
    """
    slicer = pytest.importorskip("slicer")
    import vtk

    from ODERegistrationLib.logic.headless import as_slicer_modules, headless_scene

    headless = headless_scene()
    monkeypatch.setattr(slicer, "mrmlScene", headless.scene, raising=False)
    monkeypatch.setattr(slicer, "modules", as_slicer_modules(headless), raising=False)
    previous_window = vtk.vtkOutputWindow.GetInstance()
    captured = vtk.vtkStringOutputWindow()
    vtk.vtkOutputWindow.SetInstance(captured)
    try:
        yield headless
    finally:
        vtk.vtkOutputWindow.SetInstance(previous_window)
        headless.scene.Clear(1)
    if "ERROR" in captured.GetOutput() and not request.node.get_closest_marker("allow_vtk_errors"):
        pytest.fail("VTK reported errors:\n" + captured.GetOutput())


def transform_point_difference(node, field: sitk.Image, points_ras) -> float:
    """Largest distance between MRML's FromParent mapping and SimpleITK's reading of the engine's field."""
    itk = sitk.DisplacementFieldTransform(sitk.Image(field))
    from_parent = node.GetTransformFromParent()
    flip = np.array([-1.0, -1.0, 1.0])
    worst = 0.0
    for point in points_ras:
        mrml_point = np.array(from_parent.TransformPoint(point))
        itk_point = np.array(itk.TransformPoint((point * flip).tolist())) * flip
        worst = max(worst, float(np.linalg.norm(mrml_point - itk_point)))
    return worst


def grid_points(volume, step=7):
    """RAS points off the voxel centres, every ``step`` voxels in plane, on every slice of the volume."""
    from ODERegistrationLib.logic.geometry import image_from_volume

    image = image_from_volume(volume)
    size = image.GetSize()
    flip = np.array([-1.0, -1.0, 1.0])
    return [np.array(image.TransformContinuousIndexToPhysicalPoint((i + 0.3, j + 0.6, k))) * flip
            for i in range(2, size[0] - 2, step) for j in range(2, size[1] - 2, step) for k in range(size[2])]
