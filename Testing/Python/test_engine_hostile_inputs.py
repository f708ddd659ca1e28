"""Inputs a hostile or careless user gives: each gets a correct result or one clear line and exit 2, never a
native crash, a silently bad map, or an output folder that mixes two runs (issue 10's table, row by row)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ODERegistrationLib.cli.main import main


@pytest.fixture(scope="module")
def files(small_2d_pair, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    paths = {}
    for key, image in small_2d_pair.items():
        paths[key] = str(folder / f"{key}.nii.gz")
        sitk.WriteImage(image, paths[key])
    return paths


def register(files, output, *extra, labels=True):
    arguments = ["register", "--fixed", files["fixed"], "--moving", files["moving"], "--output-dir", str(output),
                 "--quiet", *extra]
    if labels:
        arguments += ["--moving-labels", files["moving_labels"]]
    return main(arguments)


def one_line_error(capsys) -> str:
    message = capsys.readouterr().err.strip()
    assert message.count("\n") == 0, message
    return message


def test_a_diverging_run_is_an_error_not_a_result(files, tmp_path, capsys):
    assert register(files, tmp_path / "out", "--learning-rate", "1", "--iterations", "150") == 2
    message = one_line_error(capsys)
    assert "diverged" in message and "learning rate" in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["100", "1e30", "inf", "nan"])
def test_learning_rates_that_can_only_diverge_are_refused_up_front(files, tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        register(files, tmp_path / "out", "--learning-rate", value)
    assert exit_info.value.code == 2
    assert "learning rate" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_an_infinite_weight_is_refused(files, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        register(files, tmp_path / "out", "--folding-weight", "inf")
    assert exit_info.value.code == 2 and "finite" in capsys.readouterr().err


def test_values_beyond_float32_are_refused(files, small_2d_pair, tmp_path, capsys):
    huge = sitk.Cast(small_2d_pair["moving"], sitk.sitkFloat64) * 1e100
    path = str(tmp_path / "huge.nrrd")
    sitk.WriteImage(huge, path)
    assert register({**files, "moving": path}, tmp_path / "out") == 2
    message = one_line_error(capsys)
    assert path in message and "float32" in message


def test_a_spacing_far_from_millimetres_registers_instead_of_exhausting_memory(small_2d_pair, tmp_path):
    """A header whose spacing is a million times too small makes every parameter in millimetres millions of voxels:
    the smoothing's kernel must stay bounded (it asked for gigabytes and crashed with std::bad_alloc), the map
    written is still a valid one, and the report says why it hardly moved."""
    paths = {}
    for key in ("fixed", "moving", "moving_labels"):
        image = sitk.Image(small_2d_pair[key])
        image.SetSpacing((1e-6, 1e-6))
        paths[key] = str(tmp_path / f"{key}.nii.gz")
        sitk.WriteImage(image, paths[key])
    output = tmp_path / "out"
    assert register(paths, output, "--iterations", "2") == 0
    report = json.loads((output / "report.json").read_text())
    assert report["folded_voxels"] == 0 and report["inverse_folded_voxels"] == 0
    assert np.isfinite(report["min_jacobian"]) and np.isfinite(report["inverse_consistency_mm"])
    assert any("spacing is in millimetres" in warning for warning in report["warnings"])


def test_a_single_slice_volume_cut_along_another_axis_registers_with_its_qa_picture(small_2d_pair, tmp_path):
    """A volume of one sagittal slice (size 1 along i, not k): the QA picture cut the middle k slice, a line of
    voxels, and matplotlib raised a TypeError after the registration had run."""
    paths = {}
    for key in ("fixed", "moving", "moving_labels"):
        paths[key] = str(tmp_path / f"{key}.nii.gz")
        sitk.WriteImage(sitk.PermuteAxes(sitk.JoinSeries(small_2d_pair[key]), [2, 0, 1]), paths[key])
    output = tmp_path / "out"
    assert register(paths, output, "--iterations", "2") == 0
    assert sitk.ReadImage(str(output / "displacement.nii.gz")).GetSize()[0] == 1
    assert (output / "qa.png").stat().st_size > 0


@pytest.mark.parametrize("make", [lambda folder: folder / "a_file", lambda folder: folder / "a_file" / "out",
                                  lambda _: ""])
def test_an_output_folder_that_cannot_be_written_is_refused_before_any_work(files, tmp_path, capsys, make):
    (tmp_path / "a_file").write_text("not a folder")
    start = time.perf_counter()
    assert register(files, make(tmp_path), "--iterations", "100000") == 2
    assert time.perf_counter() - start < 30  # refused before 100,000 iterations could run
    assert "output folder" in one_line_error(capsys)
    assert (tmp_path / "a_file").read_text() == "not a folder"


def test_an_input_named_like_an_output_in_the_output_folder_is_refused_and_kept(files, tmp_path, capsys):
    """Chaining runs (the last run's warped.nii.gz as the next moving image, into the same folder) overwrote the
    input with the new result."""
    output = tmp_path / "out"
    output.mkdir()
    chained = output / "warped.nii.gz"
    chained.write_bytes(Path(files["moving"]).read_bytes())
    assert register({**files, "moving": str(chained)}, output, "--iterations", "2") == 2
    message = one_line_error(capsys)
    assert str(chained) in message and "output folder" in message
    assert chained.read_bytes() == Path(files["moving"]).read_bytes()
    assert sorted(path.name for path in output.iterdir()) == ["warped.nii.gz"]


@pytest.mark.parametrize("command, other_output", [("register", "forward_phase00.nii.gz"),
                                                   ("sequence", "displacement.nii.gz")])
def test_a_folder_holding_the_other_commands_outputs_is_refused_and_kept(files, cine_piece_files, tmp_path, capsys,
                                                                         command, other_output):
    """A run removes only its own kind's earlier files: a sequence written into a pair's folder left the pair's
    displacement.nii.gz beside the sequence's report.json, one folder mixing two runs."""
    output = tmp_path / "out"
    output.mkdir()
    (output / other_output).write_text("an earlier run's output")
    if command == "register":
        code = register(files, output, "--iterations", "2")
    else:
        code = main(["sequence", "--cine", str(cine_piece_files["cine"]), "--labels", str(cine_piece_files["labels"]),
                     "--reference-phase", "2", "--iterations", "2", "--output-dir", str(output), "--quiet"])
    assert code == 2
    message = one_line_error(capsys)
    assert str(output) in message and other_output in message
    assert sorted(path.name for path in output.iterdir()) == [other_output]
    assert (output / other_output).read_text() == "an earlier run's output"


def test_a_rerun_never_leaves_files_of_the_earlier_run(files, tmp_path):
    output = tmp_path / "out"
    assert register(files, output, "--iterations", "2") == 0
    assert (output / "warped_labels.nii.gz").exists()
    assert register(files, output, "--iterations", "2", labels=False) == 0
    assert not (output / "warped_labels.nii.gz").exists()
    assert json.loads((output / "report.json").read_text())["iterations"] == 2


def test_an_interrupt_while_writing_leaves_no_staging_folder(files, tmp_path, monkeypatch, capsys):
    calls = []

    def interrupted_write(*arguments, **keywords):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*arguments, **keywords)

    original = sitk.WriteImage
    monkeypatch.setattr(sitk, "WriteImage", interrupted_write)
    assert register(files, tmp_path / "out", "--iterations", "2") == 130
    assert sorted(os.listdir(tmp_path)) == []  # neither the output folder nor a hidden staging folder


def test_a_disk_that_fills_up_while_writing_is_one_line_and_leaves_nothing(files, tmp_path, monkeypatch, capsys):
    """SimpleITK's RuntimeError on a full disk came out as a traceback."""
    calls = []

    def failing_write(*arguments, **keywords):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("Exception thrown in SimpleITK ImageFileWriter_Execute: nifti library failed to "
                               "write image\n** ERROR: No space left on device")
        return original(*arguments, **keywords)

    original = sitk.WriteImage
    monkeypatch.setattr(sitk, "WriteImage", failing_write)
    assert register(files, tmp_path / "out", "--iterations", "2") == 2
    message = one_line_error(capsys)
    assert "could not be written (** ERROR: No space left on device)" in message and "nothing was written" in message
    assert sorted(os.listdir(tmp_path)) == []


@pytest.mark.parametrize("failure", [
    MemoryError("Unable to allocate 36.4 TiB for an array"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried to "
                 "allocate 40000000000000 bytes. Error code 12 (Cannot allocate memory)")])
def test_memory_running_out_on_the_cpu_is_one_line(files, tmp_path, monkeypatch, capsys, failure):
    """The CPU allocator's words and numpy's MemoryError came out as tracebacks (only CUDA's were recognised)."""
    from ODERegistrationLib.engine.pipeline import registration

    def out_of_memory(*arguments, **keywords):
        raise failure

    monkeypatch.setattr(registration, "optimize_fields", out_of_memory)
    assert register(files, tmp_path / "out", "--iterations", "2", "--roi", "whole") == 2
    message = one_line_error(capsys)
    assert message.startswith("oderegistration: error: CPU ran out of memory") and "--device cpu" not in message


def test_an_operation_the_gpu_backend_lacks_is_one_line_that_points_to_the_cpu(files, tmp_path, monkeypatch,
                                                                              capsys):
    """`--device auto` picks Apple MPS on a Mac, where torch long had no 3-D grid_sample (pytorch#77764): the fit
    stopped with torch's NotImplementedError as a traceback. It is now one line naming the device and the way out."""
    import torch
    from ODERegistrationLib.engine.pipeline import registration

    def missing_operator(*arguments, **keywords):
        raise NotImplementedError("The operator 'aten::grid_sampler_3d' is not currently implemented for the MPS "
                                  "device.\nAs a temporary fix, you can set PYTORCH_ENABLE_MPS_FALLBACK=1")

    monkeypatch.setattr(registration, "choose_device", lambda requested: torch.device("mps"))
    monkeypatch.setattr(registration, "_fit_in_region", missing_operator)
    assert register(files, tmp_path / "out", "--iterations", "2", "--roi", "whole") == 2
    message = one_line_error(capsys)
    assert message.startswith("oderegistration: error: MPS: this torch") and "'aten::grid_sampler_3d'" in message
    assert message.endswith("retry with --device cpu") and not (tmp_path / "out").exists()


def test_memory_running_out_after_the_fit_is_one_line_too(files, tmp_path, monkeypatch, capsys):
    from ODERegistrationLib.engine.pipeline import registration

    def out_of_memory(*arguments, **keywords):
        raise MemoryError("Unable to allocate 12.0 GiB for an array")

    monkeypatch.setattr(registration, "jacobian_determinant", out_of_memory)
    assert register(files, tmp_path / "out", "--iterations", "2") == 2
    assert "ran out of memory; nothing was written" in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_sigterm_stops_like_ctrl_c(files, tmp_path):
    output = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "ODERegistrationLib.cli.main", "register", "--fixed",
                                files["fixed"], "--moving", files["moving"], "--output-dir", str(output),
                                "--iterations", "100000"], stderr=subprocess.PIPE, text=True)
    time.sleep(8)  # imports, then the optimization
    process.send_signal(signal.SIGTERM)
    _, error = process.communicate(timeout=60)
    assert process.returncode == 130 and "cancelled" in error
    assert sorted(os.listdir(tmp_path)) == []


def test_a_moving_image_covering_part_of_the_fixed_view_registers_where_both_have_data(files, small_2d_pair,
                                                                                          tmp_path, capsys):
    """The moving image cropped to its left 40 %: the empty part is not 'matched' (it used to stretch det J to 9.7
    and leave a 12.6 mm mean round trip). The inverse is refined on the whole grid except around a corner that
    the map stretches twelvefold (all-or-nothing, the refinement used to be dropped: 8 mm round trip)."""
    moving = small_2d_pair["moving"]
    width = moving.GetSize()[0]
    cropped = moving[: int(0.4 * width), :]
    path = str(tmp_path / "cropped.nii.gz")
    sitk.WriteImage(cropped, path)
    assert register({**files, "moving": path}, tmp_path / "out", "--iterations", "150", "--roi", "whole",
                    labels=False) == 0
    assert "covers only 40%" in capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["overlap_fraction"] == pytest.approx(0.4, abs=0.02)
    assert report["folded_voxels"] == 0 and report["inverse_folded_voxels"] == 0
    assert report["inverse_consistency_mm"] < 1.0


def test_a_moving_image_covering_a_sliver_of_the_fixed_view_names_its_share(files, small_2d_pair, tmp_path, capsys):
    """A 4 x 4 corner of the moving image over the whole fixed one was reported as covering '0%' of it, which reads
    as no overlap at all while the run went on."""
    path = str(tmp_path / "corner.nii.gz")
    sitk.WriteImage(small_2d_pair["moving"][:4, :4], path)
    assert register({**files, "moving": path}, tmp_path / "out", "--iterations", "5", "--roi", "whole",
                    labels=False) == 0
    fixed_voxels = np.prod(small_2d_pair["fixed"].GetSize())
    share = json.loads((tmp_path / "out" / "report.json").read_text())["overlap_fraction"]
    assert 0 < share < 0.01 and share == pytest.approx(16 / fixed_voxels, rel=0.5)
    assert f"covers only {share * 100:.2g}% of" in capsys.readouterr().err


def test_an_intensity_image_given_as_labels_is_refused(files, tmp_path, capsys):
    moving = sitk.ReadImage(files["moving"])
    shape = sitk.GetArrayViewFromImage(moving).shape
    noisy = sitk.GetImageFromArray(np.arange(np.prod(shape), dtype=np.int32).reshape(shape))
    noisy.CopyInformation(moving)
    path = str(tmp_path / "intensity_as_labels.nii.gz")
    sitk.WriteImage(noisy, path)
    assert register({**files, "moving_labels": path}, tmp_path / "out") == 2
    message = one_line_error(capsys)
    assert path in message and "intensity image" in message


def test_an_image_given_as_its_own_labels_is_refused(files, tmp_path, capsys):
    """A cardiac MR image holds a few hundred whole, non-negative values: it passed as a label map of that many
    labels, each 'propagated' and scored."""
    as_integers = str(tmp_path / "moving_as_integers.nii.gz")
    sitk.WriteImage(sitk.Cast(sitk.ReadImage(files["moving"]), sitk.sitkUInt16), as_integers)
    assert register({**files, "moving_labels": as_integers}, tmp_path / "out") == 2
    message = one_line_error(capsys)
    assert as_integers in message and "looks like an intensity image" in message
    assert not (tmp_path / "out").exists()


def test_a_label_map_of_many_labels_is_taken():
    """An atlas of a thick-slice stack: hundreds of labels, each a patch of one value in its slice, and no label
    shared by two slices (the check looks along the axis where neighbours agree most)."""
    from ODERegistrationLib.engine.pipeline.validation import check_labels

    slices, rows, columns = 5, 48, 60
    patch = (np.arange(rows)[:, None] // 6) * 10 + np.arange(columns)[None, :] // 6
    atlas = np.stack([patch + 100 * k + 1 for k in range(slices)]).astype(np.int32)
    labels = sitk.GetImageFromArray(atlas)
    labels.SetSpacing((1.5, 1.5, 10.0))
    image = sitk.Cast(labels, sitk.sitkFloat32)
    assert np.unique(check_labels(labels, image, "atlas", "stack")).size == 400


def test_fixed_labels_alone_are_refused(files, tmp_path, capsys):
    assert register(files, tmp_path / "out", "--fixed-labels", files["fixed_labels"], labels=False) == 2
    assert "moving labels too" in one_line_error(capsys)


@pytest.mark.parametrize("key, purpose", [("moving_labels", "propagate"), ("fixed_labels", "score")])
def test_an_empty_label_map_is_refused(files, tmp_path, capsys, key, purpose):
    """Empty fixed labels gave a run with no score and no word; empty moving labels were reported as lying outside
    the fixed field of view."""
    empty = sitk.ReadImage(files[key]) * 0
    path = str(tmp_path / f"empty_{key}.nii.gz")
    sitk.WriteImage(empty, path)
    assert register({**files, key: path}, tmp_path / "out", "--fixed-labels", files["fixed_labels"]
                    if key == "moving_labels" else path) == 2
    message = one_line_error(capsys)
    assert path in message and f"is empty (no nonzero voxel), so there is nothing to {purpose}" in message
    assert not (tmp_path / "out").exists()


def test_moving_labels_outside_the_fixed_field_of_view_are_refused(files, tmp_path, capsys):
    """A fixed image that shows another part of the body than the labels: the region was a sliver of margin, the
    propagated labels came out empty, and the only word was that the map 'moves the labels by at most 0 mm'."""
    corner = sitk.ReadImage(files["fixed"])[:16, :16]
    labels_there = sitk.Resample(sitk.ReadImage(files["moving_labels"]), corner, sitk.Transform(),
                                 sitk.sitkNearestNeighbor, 0)
    assert not sitk.GetArrayFromImage(labels_there).any()
    path = str(tmp_path / "corner.nii.gz")
    sitk.WriteImage(corner, path)
    assert register({**files, "fixed": path}, tmp_path / "out") == 2
    message = one_line_error(capsys)
    assert files["moving_labels"] in message and "no label lies inside the field of view" in message
    assert not (tmp_path / "out").exists()


def test_fixed_labels_numbered_unlike_the_moving_ones_are_flagged(files, tmp_path):
    """Fixed labels 10, 20, 30 against moving labels 1, 2, 3 scored Dice 0 for every label without a word; fixed
    labels that the moving ones all have (the usual case, and the demo's) are not flagged."""
    renumbered = str(tmp_path / "fixed_labels_x10.nii.gz")
    sitk.WriteImage(sitk.ReadImage(files["fixed_labels"]) * 10, renumbered)
    for fixed_labels, output, flagged in ((files["fixed_labels"], tmp_path / "same", False),
                                          (renumbered, tmp_path / "renumbered", True)):
        assert register(files, output, "--fixed-labels", fixed_labels, "--iterations", "2") == 0
        warnings = json.loads((output / "report.json").read_text())["warnings"]
        assert any("score Dice 0" in warning and fixed_labels in warning for warning in warnings) == flagged


@pytest.mark.parametrize("after_checks", [3, 4, 5])
def test_cancel_while_the_outputs_are_made_stops_the_run(small_2d_pair, after_checks):
    """Cancel must act within seconds even after the optimizer's last iteration: making the outputs of a whole
    cine's batch takes tens of seconds, so register_images checks again between its output steps."""
    from ODERegistrationLib.engine import RegistrationCancelled, RegistrationParameters, register_images

    checks = []

    def cancel():  # false for the 3 iterations, true from the given check on
        checks.append(True)
        return len(checks) > after_checks

    with pytest.raises(RegistrationCancelled):
        register_images(small_2d_pair["fixed"], small_2d_pair["moving"],
                        RegistrationParameters(iterations=3, convergence_tolerance=0.0), cancel=cancel,
                        moving_labels=small_2d_pair["moving_labels"])
