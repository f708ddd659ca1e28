"""Layouts (2-D, 3-D, slice-by-slice), device choice, and a slice-by-slice run on a real stack."""
import contextlib

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from ODERegistrationLib.engine import DeviceError, InputError, RegistrationParameters, register_images
from ODERegistrationLib.engine.core.device import (choose_device, is_out_of_memory, net_memory_format, net_precision,
                                              out_of_memory_message)
from ODERegistrationLib.engine.pipeline.layout import choose_layout
from ODERegistrationLib.engine.core.network import VelocityNet

from conftest import load_pair, shrink_pair


def test_auto_picks_slices_for_thick_stacks_and_3d_for_isotropic_volumes():
    assert choose_layout("auto", (10, 232, 256), (10.0, 1.5625, 1.5625)).mode == "slices"
    assert choose_layout("auto", (10, 232, 256), (10.0, 1.5625, 1.5625)).slice_axis == 0
    assert choose_layout("auto", (64, 64, 64), (1.0, 1.0, 1.2)).mode == "3d"
    assert choose_layout("auto", (64, 64), (1.0, 1.0)).mode == "2d"
    assert choose_layout("auto", (64, 1, 64), (1.0, 1.0, 1.0)).slice_axis == 1
    with pytest.raises(InputError, match="mode 2d"):
        choose_layout("2d", (8, 8, 8), (1.0, 1.0, 1.0))


def test_a_single_slice_volume_registers_as_2d_in_every_mode_but_3d(small_2d_pair):
    """Slicer holds every 2-D image as a volume one slice thick: mode 2d used to refuse it. Its map must be the
    2-D image's map."""
    def one_slice(image):
        volume = sitk.JoinSeries(image)
        volume.SetSpacing(image.GetSpacing() + (8.0,))
        return volume

    fixed, moving = small_2d_pair["fixed"], small_2d_pair["moving"]
    parameters = RegistrationParameters(iterations=20, region="whole")
    flat = sitk.GetArrayFromImage(register_images(fixed, moving, parameters).forward)
    for mode in ("2d", "auto", "slices"):
        result = register_images(one_slice(fixed), one_slice(moving), parameters.replace(mode=mode))
        assert result.report["mode"] == "2d"
        field = sitk.GetArrayFromImage(result.forward)
        assert field.shape == (1, *flat.shape[:2], 3)
        assert np.allclose(field[0, ..., :2], flat, atol=1e-5) and np.all(field[..., 2] == 0)
    with pytest.raises(InputError, match="4 voxels"):
        register_images(one_slice(fixed), one_slice(moving), parameters.replace(mode="3d"))


def test_slices_layout_round_trip_puts_in_plane_vectors_on_the_right_axes():
    layout = choose_layout("slices", (3, 5, 7), (9.0, 1.0, 1.0))
    tensor = layout.to_tensor(np.zeros((3, 5, 7), np.float32), torch.device("cpu"))
    assert tuple(tensor.shape) == (3, 1, 5, 7)
    field = torch.zeros(3, 2, 5, 7)
    field[:, 0] = 1.0  # x = i, one normalized unit = 3 voxels along the 7-voxel axis
    field[:, 1] = -1.0  # y = j, 2 voxels along the 5-voxel axis
    vectors = layout.to_voxel_displacement(field)
    assert vectors.shape == (3, 5, 7, 3)
    assert np.allclose(vectors[..., 0], 3.0) and np.allclose(vectors[..., 1], -2.0) and np.allclose(vectors[..., 2], 0.0)


def test_device_choice_on_a_cpu_machine():
    assert choose_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="cuda"):
            choose_device("cuda")
        assert choose_device("auto").type in ("cpu", "mps")


def test_out_of_memory_is_recognised_and_explained():
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    with pytest.raises(RuntimeError) as cpu_failure:  # the CPU allocator's own words, which came out as a traceback
        torch.empty(2**62, dtype=torch.uint8)
    assert is_out_of_memory(cpu_failure.value)
    assert is_out_of_memory(MemoryError("Unable to allocate 36.4 TiB for an array"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    message = out_of_memory_message(torch.device("cuda"), (256, 256, 160))
    assert "256 x 256 x 160" in message and "cpu" in message and "--working-spacing-mm" in message
    assert "--device cpu" not in out_of_memory_message(torch.device("cpu"), (256, 256, 160))


@pytest.mark.filterwarnings("ignore:CUDA is not available")  # constructing a CUDA autocast on a CPU-only machine
def test_only_a_bf16_capable_gpu_runs_the_net_in_reduced_precision(monkeypatch):
    with net_precision(torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert isinstance(net_precision(torch.device("cuda")), contextlib.nullcontext)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    context = net_precision(torch.device("cuda"))
    assert isinstance(context, torch.autocast) and context.fast_dtype == torch.bfloat16


@pytest.mark.parametrize("dim", [2, 3])
def test_the_cpu_layout_of_the_net_changes_speed_not_the_velocity(dim):
    """The net's weights are channels-last on the CPU: each slice's velocity must still come from its own group of
    channels, in its own direction, as with the default layout."""
    fields, shape = 3, (6, 7, 5)[:dim]
    torch.manual_seed(0)
    default = VelocityNet(dim, fields, kernel_size=3)
    for parameter in default.parameters():  # weights of order 1: a mixed-up channel would show
        torch.nn.init.normal_(parameter)
    channels_last = VelocityNet(dim, fields, kernel_size=3)
    channels_last.load_state_dict(default.state_dict())
    channels_last.to(memory_format=net_memory_format(torch.device("cpu"), dim))
    assert not next(channels_last.parameters()).is_contiguous()
    grids, displacement = torch.randn(2, dim, *shape), torch.randn(2 * fields, dim, *shape)
    expected, velocity = default(grids, displacement), channels_last(grids, displacement)
    assert (velocity - expected).abs().max() < 1e-5 * expected.abs().max()  # float32 rounding of another order


def test_slice_by_slice_on_a_real_stack_keeps_slices_apart(data_dir):
    pair = shrink_pair(load_pair(data_dir, "acdc", "acdc_patient046_3d"), 4)
    slices_only = RegistrationParameters(iterations=30, mode="slices", through_plane_sigma_mm=0.0)
    result = register_images(pair["fixed"], pair["moving"], slices_only,
                             moving_labels=pair["moving_labels"], fixed_labels=pair["fixed_labels"])
    assert result.report["mode"] == "slices"
    vectors = sitk.GetArrayFromImage(result.forward)
    assert np.abs(vectors[..., 2]).max() == 0.0  # no through-plane motion
    assert np.abs(vectors[..., :2]).max() > 0.1
    assert result.report["folded_voxels"] == 0
    assert result.warped_labels.GetSize() == pair["fixed"].GetSize()


def test_3d_mode_runs_on_a_volume(data_dir):
    pair = shrink_pair(load_pair(data_dir, "acdc", "acdc_patient046_3d"), 8)
    result = register_images(pair["fixed"], pair["moving"], RegistrationParameters(iterations_3d=3, mode="3d", levels=1))
    assert result.report["mode"] == "3d"
    assert sitk.GetArrayFromImage(result.forward).shape == tuple(reversed(pair["fixed"].GetSize())) + (3,)


def test_a_fit_runs_on_the_cpu_threads_asked_for_and_its_report_records_them(small_2d_pair):
    """The same run on one and on two threads gives another map (sums split by thread), and the Slicer panel leaves
    a core to the interface where the command line does not: their results differed with nothing to tell why. The
    count is now applied during the fit, restored after, and recorded (0: the caller's count), so that
    --parameters re-runs a panel's result exactly."""
    fixed, moving = small_2d_pair["fixed"], small_2d_pair["moving"]
    before = torch.get_num_threads()
    asked = 1 if before > 1 else 2
    seen = set()
    parameters = RegistrationParameters(iterations=3, region="whole", device="cpu")
    report = register_images(fixed, moving, parameters.replace(threads=asked),
                             progress=lambda progress: seen.add(torch.get_num_threads())).report
    assert seen == {asked} and report["parameters"]["threads"] == asked and torch.get_num_threads() == before
    report = register_images(fixed, moving, parameters).report
    assert report["parameters"]["threads"] == before and not any("CPU threads" in w for w in report["warnings"])


def test_more_cpu_threads_than_cores_are_warned_of(small_2d_pair):
    """Threads beyond the cores only slow a fit (the demo with 5 iterations, on 2 cores: 24 s on 1024 threads, 4 s
    on 2), so a run that was asked for them says so."""
    import os

    parameters = RegistrationParameters(iterations=2, region="whole", device="cpu", threads=os.cpu_count() + 1)
    report = register_images(small_2d_pair["fixed"], small_2d_pair["moving"], parameters).report
    assert any(f"ran on {os.cpu_count() + 1} CPU threads, more than" in warning for warning in report["warnings"])
