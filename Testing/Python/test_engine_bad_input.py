"""Each bad input gets one clear line naming the file and the problem, exit code 2, and no output directory."""
import gzip
import locale
import os
import re
import struct
from typing import Optional

import numpy as np
import pytest
import SimpleITK as sitk

from ODERegistrationLib.cli.main import main
from ODERegistrationLib.engine.pipeline.inputs import read_image


def image_2d(array=None, spacing=(1.0, 1.0), seed=0):
    if array is None:
        array = np.random.default_rng(seed).random((32, 32)).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    return image


@pytest.fixture
def write(tmp_path):
    def _write(name, image):
        path = tmp_path / name
        sitk.WriteImage(image, str(path))
        return str(path)
    return _write


def run_cli(tmp_path, capsys, fixed, moving, *extra):
    """Without --quiet: the error must be the only line, the progress bar's lines included."""
    output = tmp_path / "out"
    code = main(["register", "--fixed", fixed, "--moving", moving, "--output-dir", str(output),
                 "--iterations", "1", *extra])
    message = capsys.readouterr().err.strip()
    return code, message, output


CASES = {
    "dimension mismatch": (lambda: image_2d(), lambda: sitk.Image([16, 16, 16], sitk.sitkFloat32) + 1.0, "same dimension"),
    "4-D image": (lambda: image_2d(), lambda: sitk.JoinSeries([sitk.Image([8, 8, 8], sitk.sitkFloat32)] * 2), "4-D"),
    "vector image": (lambda: image_2d(), lambda: sitk.Image([16, 16], sitk.sitkVectorFloat32, 3), "components"),
    "complex image": (lambda: image_2d(), lambda: sitk.Cast(image_2d(), sitk.sitkComplexFloat32), "complex numbers"),
    "constant image": (lambda: image_2d(np.full((32, 32), 7, np.float32)), lambda: image_2d(), "constant"),
    "NaN": (lambda: image_2d(), lambda: image_2d(np.where(np.eye(32) > 0, np.nan, 1.0).astype(np.float32)), "NaN"),
    "infinity": (lambda: image_2d(), lambda: image_2d(np.where(np.eye(32) > 0, np.inf, 1.0).astype(np.float32)), "infinite"),
    "a line of voxels": (lambda: image_2d(), lambda: image_2d(np.arange(32, dtype=np.float32)[None]), "line of voxels"),
    "a sheared grid": (lambda: image_2d(), lambda: sheared(image_2d()), "axes are not perpendicular"),
    "the same image twice": (lambda: image_2d(), lambda: image_2d(), "is the same image as fixed"),
}


def sheared(image):
    """An .mha can hold a sheared grid; NIfTI cannot, so the outputs came back rotated, off the fixed grid."""
    image.SetDirection((1.0, 0.3, 0.0, 1.0))
    return image


@pytest.mark.parametrize("case", CASES)
def test_bad_image_gives_a_clear_error(case, tmp_path, capsys, write):
    make_fixed, make_moving, expected = CASES[case]
    fixed, moving = write("fixed.nii.gz", make_fixed()), write("moving.nrrd", make_moving())
    code, message, output = run_cli(tmp_path, capsys, fixed, moving)
    assert code == 2
    assert expected in message and message.count("\n") == 0
    assert ("fixed" in message and fixed in message) or ("moving" in message and moving in message)
    assert not output.exists()


def test_unreadable_and_missing_files(tmp_path, capsys, write):
    fixed = write("fixed.nii.gz", image_2d())
    garbage = tmp_path / "notes.nii.gz"
    garbage.write_text("not an image")
    code, message, output = run_cli(tmp_path, capsys, fixed, str(garbage))
    assert code == 2 and str(garbage) in message and "cannot be read" in message and not output.exists()
    written_not_readable = write("vector_row.nii.gz", sitk.Image([8, 1, 1], sitk.sitkVectorFloat32, 8))
    code, message, output = run_cli(tmp_path, capsys, fixed, written_not_readable)
    assert code == 2 and "unsupported image dimension" in message and message.count("\n") == 0, \
        "SimpleITK's own reason, not a generic one"
    assert not output.exists()
    sheared_nifti = tmp_path / "sheared.nii"
    sheared_nifti.write_bytes(with_sform(open(write("plain.nii", image_2d()), "rb").read(), (1.0, 0.5, 0.0, 0.0), 0))
    code, message, output = run_cli(tmp_path, capsys, fixed, str(sheared_nifti))
    assert code == 2 and "orthonormal direction cosines" in message and message.count("\n") == 0, \
        "ITK's reason, not 'not an image format SimpleITK can read'"
    assert not output.exists()
    beyond_memory = tmp_path / "beyond_memory.mha"
    header = open(write("small.mha", image_2d()), "rb").read().decode("latin-1")
    for key, value in (("NDims", "3"), ("TransformMatrix", "1 0 0 0 1 0 0 0 1"), ("Offset", "0 0 0"),
                       ("CenterOfRotation", "0 0 0"), ("ElementSpacing", "1 1 1"),
                       ("DimSize", "32767 32767 32767")):  # 140 TB of float32, past any address space
        header = re.sub(rf"^{key} = .*$", f"{key} = {value}", header, count=1, flags=re.MULTILINE)
    beyond_memory.write_bytes(header.encode("latin-1"))
    code, message, output = run_cli(tmp_path, capsys, fixed, str(beyond_memory))
    assert code == 2 and message.endswith("cannot be read (Failed to allocate memory for image; its header gives "
                                          "32767 x 32767 x 32767 = 3.52e+13 voxels)"), message
    code, message, _ = run_cli(tmp_path, capsys, fixed, str(tmp_path / "missing.nii.gz"))
    assert code == 2 and "no such file" in message
    pipe = tmp_path / "pipe.nii.gz"
    os.mkfifo(pipe)  # exists, but reading it would wait for a writer; it was called missing
    code, message, _ = run_cli(tmp_path, capsys, fixed, str(pipe))
    assert code == 2 and message.endswith(f"moving {pipe}: is not a file (a device, a pipe or a socket); give an "
                                          "image file"), message
    code, message, _ = run_cli(tmp_path, capsys, fixed, str(tmp_path))
    assert code == 2 and "is a folder holding no DICOM series" in message and message.count("\n") == 0


def with_sform(nifti: bytes, first_row, qform_code: int) -> bytes:
    """A NIfTI-1 header whose sform has this first row (srow_x); with qform code 0 the sform is its only
    orientation, as some converters write."""
    header = bytearray(nifti)
    struct.pack_into("<hh", header, 252, qform_code, 2)  # qform_code, sform_code
    struct.pack_into("<4f", header, 280, *first_row)
    return bytes(header)


def test_what_itk_says_of_a_header_it_reads_is_one_warning_line(tmp_path, capfd, write):
    """A NIfTI file whose sform gives another voxel size than its qform: ITK takes the qform, and said so in six
    lines of its own on the process's standard error, with paths inside ITK's build."""
    fixed = write("fixed.nii.gz", image_2d())
    odd = tmp_path / "odd_scales.nii"
    odd.write_bytes(with_sform(open(write("plain.nii", image_2d(seed=1)), "rb").read(), (-2.0, 0.0, 0.0, 0.0), 1))
    assert main(["register", "--fixed", fixed, "--moving", str(odd), "--output-dir", str(tmp_path / "out"),
                 "--iterations", "1", "--quiet"]) == 0
    lines = capfd.readouterr().err.splitlines()
    assert f"oderegistration: warning: moving {odd}: ITK: {odd} has unexpected scales in sform" in lines
    assert all(line.startswith("oderegistration: warning: ") for line in lines), lines


def write_dicom_series(volume: sitk.Image, folder, series_uid: str, one_position: bool = False,
                       trigger_ms: Optional[float] = None, first_instance: int = 1) -> None:
    """One file per slice with the tags GDCM sorts a series by; ``one_position`` puts every image at the first
    slice's position, as a single-slice cine's phases are; ``trigger_ms`` makes the volume one phase of a cine.
    GDCM's writer sets the C library's locale to "C", after which Python reads text as ASCII: the locale is put
    back."""
    locale_before = locale.setlocale(locale.LC_ALL)
    folder.mkdir(exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    d = volume.GetDirection()
    for k in range(volume.GetDepth()):
        image = volume[:, :, k]
        position = volume.TransformIndexToPhysicalPoint((0, 0, 0 if one_position else k))
        tags = {"0008|0060": "MR", "0020|000d": "1.2.826.0.1.1", "0020|000e": series_uid,
                "0020|0032": "\\".join(map(str, position)), "0020|0013": str(first_instance + k),
                "0020|0037": "\\".join(map(str, (d[0], d[3], d[6], d[1], d[4], d[7])))}
        if trigger_ms is not None:
            tags["0018|1060"] = f"{trigger_ms:g}"
        for tag, value in tags.items():
            image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{series_uid}_{first_instance + k:03d}.dcm"))
        writer.Execute(image)
    locale.setlocale(locale.LC_ALL, locale_before)


def test_a_dicom_folder_of_one_volume_is_read_and_others_are_refused(tmp_path, capsys, write):
    """Clinicians export DICOM: a series folder is read as its volume. A cine series read the same way stacked its
    phases as slices 1 mm apart without a word, so it is refused, and so are a folder of several series, a series
    with a slice missing and a series whose images are not parallel."""
    volume = sitk.GetImageFromArray(np.random.default_rng(1).integers(0, 1000, (4, 16, 16)).astype(np.int16))
    volume.SetSpacing((1.5, 1.5, 8.0))
    volume.SetOrigin((10.0, -20.0, 30.0))
    write_dicom_series(volume, tmp_path / "volume", "1.2.826.0.1.2")
    read = read_image(tmp_path / "volume", "fixed")
    assert np.array_equal(sitk.GetArrayFromImage(read), sitk.GetArrayFromImage(volume))
    assert np.allclose(read.GetSpacing(), volume.GetSpacing()) and np.allclose(read.GetOrigin(), volume.GetOrigin())
    write_dicom_series(volume, tmp_path / "cine", "1.2.826.0.1.3", one_position=True)
    write_dicom_series(volume, tmp_path / "two", "1.2.826.0.1.4")
    write_dicom_series(volume, tmp_path / "two", "1.2.826.0.1.5")
    moving = write("moving.nii.gz", sitk.Cast(volume, sitk.sitkFloat32))
    for folder, expected in (("cine", "holds 4 images at 1 slice positions (a cine, or several echoes), not one volume; `oderegistration sequence --cine` reads"), ("two", "holding 2 DICOM series; give an image file or the folder of one DICOM series (`oderegistration sequence --cine` reads a cine stored as one series per slice position)")):
        code, message, output = run_cli(tmp_path, capsys, str(tmp_path / folder), moving)
        assert code == 2 and expected in message and message.count("\n") == 0 and not output.exists()
    assert main(["sequence", "--cine", str(tmp_path / "volume"), "--labels", moving, "--reference-phase", "0",
                 "--output-dir", str(tmp_path / "out")]) == 2
    assert "one image per slice position (a volume), not a cine" in capsys.readouterr().err
    write_dicom_series(volume, tmp_path / "gap", "1.2.826.0.1.6")
    (tmp_path / "gap" / "1.2.826.0.1.6_002.dcm").unlink()  # ITK spaced the three slices left evenly, 12 mm apart
    code, message, output = run_cli(tmp_path, capsys, str(tmp_path / "gap"), moving)
    assert code == 2 and "its slices are not evenly spaced (steps of 8 to 16 mm" in message and not output.exists()
    write_dicom_series(volume, tmp_path / "tilted", "1.2.826.0.1.7")  # one image turned by 10 degrees, as the
    turned = tmp_path / "tilted" / "1.2.826.0.1.7_003.dcm"              # planes of a localizer share a series
    image = sitk.ReadImage(str(turned))  # its tags, not its direction, are what the writer writes
    image.SetMetaData("0020|0037", "\\".join(map(str, (1, 0, 0, 0, np.cos(np.radians(10)), np.sin(np.radians(10))))))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetFileName(str(turned))
    writer.Execute(image)
    code, message, output = run_cli(tmp_path, capsys, str(tmp_path / "tilted"), moving)
    assert code == 2 and "its images do not share one in-plane grid and orientation (1.2.826.0.1.7_003.dcm differs" \
        in message and not output.exists()
    series_files = sorted((tmp_path / "volume").iterdir())
    assert main(["register", "--fixed", str(tmp_path / "volume"), "--moving", moving, "--output-dir",
                 str(tmp_path / "volume"), "--iterations", "1"]) == 2
    assert "is the output folder" in capsys.readouterr().err and sorted((tmp_path / "volume").iterdir()) == series_files


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_a_nifti_file_that_ends_early_is_refused(tmp_path, capsys, write, suffix):
    """ITK reads a NIfTI file cut short (an interrupted copy) without a word, the missing voxels as 0, and the run
    registered half an image."""
    fixed = write("fixed.nii.gz", image_2d())
    whole = write(f"whole{suffix}", image_2d(seed=1))
    cut = tmp_path / f"cut{suffix}"
    content = open(whole, "rb").read()
    cut.write_bytes(content[:len(content) * 2 // 3])
    assert sitk.ReadImage(whole).GetSize() == sitk.ReadImage(str(cut)).GetSize()  # ITK alone does not notice
    code, message, output = run_cli(tmp_path, capsys, fixed, str(cut))
    assert code == 2 and str(cut) in message and "truncated" in message and not output.exists()
    code, _, _ = run_cli(tmp_path, capsys, fixed, whole)
    assert code == 0
    compressed = suffix == ".nii.gz"
    header = bytearray(gzip.decompress(content) if compressed else content)
    struct.pack_into("<4h", header, 40, 3, 32767, 32767, 32767)  # 140 TB announced, a few kB held
    announcing_more = tmp_path / f"announcing_more{suffix}"
    announcing_more.write_bytes(gzip.compress(bytes(header)) if compressed else bytes(header))
    code, message, _ = run_cli(tmp_path, capsys, fixed, str(announcing_more))
    assert code == 2 and f"is truncated: its header announces {352 + 4 * 32767 ** 3} bytes" in message, \
        "checked before ITK reads it, which allocates what the header announces (and here fails to)"


def test_labels_on_another_grid(tmp_path, capsys, write):
    fixed, moving = write("fixed.nii.gz", image_2d()), write("moving.nii.gz", image_2d(seed=1))
    other_voxels = sitk.Image([16, 16], sitk.sitkUInt8)
    other_voxels.SetSpacing([2.0, 2.0])
    other_voxels[8, 8] = 1
    labels = write("labels.nii.gz", other_voxels)
    code, message, output = run_cli(tmp_path, capsys, fixed, moving, "--moving-labels", labels)
    assert code == 2 and f"{labels}: its grid (size (16, 16), spacing (2.0, 2.0))" in message and not output.exists()


def test_labels_on_the_images_voxels_over_another_extent_are_placed_on_its_grid(tmp_path, capsys, write):
    """A segmentation saved cropped to its segments, or grown to hold them, as Slicer can save one: the image's
    voxels over another extent, refused before as another grid. Labels beyond the image's extent are refused, not
    dropped."""
    image, other = write("image.nii.gz", image_2d()), write("other.nii.gz", image_2d(seed=1))
    array = np.zeros((32, 32), np.uint8)
    array[10:20, 12:22] = 1
    full = sitk.GetImageFromArray(array)
    grown = sitk.ConstantPad(full, [4, 4], [4, 4])
    warped = []
    for name, labels in (("full", full), ("cropped", full[8:24, 6:26]), ("grown", grown)):
        output = tmp_path / name
        assert main(["register", "--fixed", other, "--moving", image, "--moving-labels", write(f"{name}.nii.gz", labels),
                     "--output-dir", str(output), "--iterations", "1", "--quiet"]) == 0
        warped.append(sitk.ReadImage(str(output / "warped_labels.nii.gz")))
    assert all(labels.GetSize() == (32, 32) and np.array_equal(sitk.GetArrayFromImage(labels), array)
               for labels in warped)
    grown[0, 0] = 1
    beyond = write("beyond.nii.gz", grown)
    code, message, output = run_cli(tmp_path, capsys, image, image, "--moving-labels", beyond)
    assert code == 2 and f"{beyond}: 1 of its labelled voxels lie beyond" in message and not output.exists()


@pytest.mark.parametrize("labels, found", [
    (lambda: sitk.Cast(image_2d(np.eye(32, dtype=np.float32)), sitk.sitkComplexFloat32), "holds complex values"),
    (lambda: sitk.Image([32, 32], sitk.sitkVectorUInt8, 2), "holds 2 values per voxel"),
    (lambda: sitk.Image([32, 32, 3], sitk.sitkUInt8), "is 3-D (size (32, 32, 3))")],
    ids=["complex", "vector", "3-D for a 2-D image"])
def test_labels_that_are_no_scalar_label_map_like_the_image_say_what_they_are(tmp_path, capsys, write, labels,
                                                                              found):
    fixed, moving = write("fixed.nii.gz", image_2d()), write("moving.nii.gz", image_2d(seed=1))
    labels = write("labels.nrrd", labels())
    code, message, output = run_cli(tmp_path, capsys, fixed, moving, "--moving-labels", labels)
    assert code == 2 and f"{labels}: {found}, not a scalar 2-D label map like moving" in message
    assert not output.exists()


def test_images_that_do_not_overlap(tmp_path, capsys, write):
    far = image_2d()
    far.SetOrigin((1000.0, 1000.0))
    fixed, moving = write("fixed.nii.gz", image_2d()), write("moving.nii.gz", far)
    code, message, output = run_cli(tmp_path, capsys, fixed, moving)
    assert code == 2 and "does not overlap" in message and not output.exists()


def test_mode_that_does_not_fit_the_images(tmp_path, capsys, write):
    fixed, moving = write("fixed.nii.gz", image_2d()), write("moving.nii.gz", image_2d(seed=1))
    code, message, output = run_cli(tmp_path, capsys, fixed, moving, "--mode", "3d")
    assert code == 2 and "mode 3d" in message and not output.exists()
