"""Similarity terms: zero or lowest for identical images, growing with misalignment."""
import pytest
import torch

from ODERegistrationLib.engine.fields import gaussian_smooth
from ODERegistrationLib.engine.losses import similarity_loss, ssim_loss


@pytest.fixture
def image():
    return gaussian_smooth(torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(0)), [2.0, 2.0])


def test_ssim_is_zero_for_identical_images_and_grows_with_noise(image):
    assert float(ssim_loss(image, image)) == pytest.approx(0.0, abs=1e-6)
    noise = torch.rand(image.shape, generator=torch.Generator().manual_seed(1))
    assert 0 < float(ssim_loss(image, image + 0.02 * noise)) < float(ssim_loss(image, image + 0.2 * noise))


def test_ssim_works_in_3d():
    volume = torch.rand(1, 1, 12, 20, 20, generator=torch.Generator().manual_seed(2))
    assert float(ssim_loss(volume, volume)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name", ["mi+ssim", "ssim", "mse", "mi"])
def test_every_similarity_prefers_the_aligned_image(image, name):
    loss = similarity_loss(name, image[0, 0].numel(), image.device)
    shifted = torch.roll(image, shifts=3, dims=-1)
    assert float(loss(image, image)) < float(loss(shifted, image))


def test_mi_on_a_voxel_sample_stays_close_to_mi_on_all_voxels():
    from ODERegistrationLib.engine.losses import mutual_information_loss

    volume = gaussian_smooth(torch.rand(1, 1, 40, 40, 40, generator=torch.Generator().manual_seed(3)), [1.5] * 3)
    other = torch.roll(volume, 2, dims=-1)
    samples = torch.randperm(volume.numel(), generator=torch.Generator().manual_seed(0))[:20_000]
    full, sampled = mutual_information_loss(volume, other), mutual_information_loss(volume, other, samples=samples)
    assert abs(float(full) - float(sampled)) < 0.05 * abs(float(full))
