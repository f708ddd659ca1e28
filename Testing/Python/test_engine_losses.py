"""Similarity terms: zero or lowest for identical images, growing with misalignment."""
import functools
import itertools

import pytest
import torch

from ODERegistrationLib.engine.core.fields import gaussian_smooth
from ODERegistrationLib.engine.core.losses import (LNCC_EPSILON, SSIM, MutualInformation, lncc_loss,
                                                  mutual_information_loss, similarity_loss, ssim_loss)


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


@pytest.mark.parametrize("name", ["mi+ssim", "lncc", "ssim", "mse", "mi"])
def test_every_similarity_prefers_the_aligned_image(image, name):
    loss = similarity_loss(name, image[0, 0].numel(), image.device, lncc_window=7)
    shifted = torch.roll(image, shifts=3, dims=-1)
    assert float(loss(image, image)) < float(loss(shifted, image))


def test_mi_on_a_voxel_sample_stays_close_to_mi_on_all_voxels():
    volume = gaussian_smooth(torch.rand(1, 1, 40, 40, 40, generator=torch.Generator().manual_seed(3)), [1.5] * 3)
    other = torch.roll(volume, 2, dims=-1)
    samples = torch.randperm(volume.numel(), generator=torch.Generator().manual_seed(0))[:20_000]
    full, sampled = mutual_information_loss(volume, other), mutual_information_loss(volume, other, samples=samples)
    assert abs(float(full) - float(sampled)) < 0.05 * abs(float(full))


SAMPLES = torch.randperm(24 * 24, generator=torch.Generator().manual_seed(4))[:300]


@pytest.mark.parametrize("kept, direct", [
    (MutualInformation(SAMPLES), lambda *images: mutual_information_loss(*images, samples=SAMPLES)),
    (SSIM(), ssim_loss),
], ids=["mi", "ssim"])
def test_a_similarity_keeping_its_targets_terms_gives_each_targets_value_and_gradient(kept, direct):
    """The kept terms of a target (MI's Parzen weights, SSIM's local statistics) must give the similarity's value
    and gradient, and be rebuilt for another target (a cache that ignored the target would score every image
    against the first one)."""
    generator = torch.Generator().manual_seed(5)
    first, second = (gaussian_smooth(torch.rand(2, 1, 24, 24, generator=generator), [1.0, 1.0]) for _ in range(2))
    weight = torch.rand(2, 1, 24, 24, generator=generator)
    for target in (first, first, second):
        warped = torch.roll(target, 1, dims=-1).clone().requires_grad_()
        value = kept(warped, target, weight)
        (gradient,) = torch.autograd.grad(value, warped)
        fresh = warped.detach().clone().requires_grad_()
        expected = direct(fresh, target, weight)
        (expected_gradient,) = torch.autograd.grad(expected, fresh)
        assert value.item() == expected.item() and torch.equal(gradient, expected_gradient)


def _direct_lncc(x: torch.Tensor, y: torch.Tensor, window: int) -> torch.Tensor:
    """LNCC written out window by window (the windows clipped at the border), for images (1, 1, *spatial)."""
    radius = window // 2
    values = []
    for centre in itertools.product(*(range(n) for n in x.shape[2:])):
        box = (..., *(slice(max(c - radius, 0), c + radius + 1) for c in centre))
        a, b = x[box].flatten(), y[box].flatten()
        covariance = (a * b).mean() - a.mean() * b.mean()
        variances = ((a * a).mean() - a.mean() ** 2) * ((b * b).mean() - b.mean() ** 2)
        values.append(covariance ** 2 / (variances + LNCC_EPSILON))
    return 1.0 - torch.stack(values).mean()


@pytest.mark.parametrize("shape", [(12, 11), (3, 9, 8)], ids=["2-D", "3-D, fewer slices than the window"])
def test_lncc_value_and_gradient_match_a_direct_computation(shape):
    generator = torch.Generator().manual_seed(4)
    x = gaussian_smooth(torch.rand(1, 1, *shape, generator=generator), [1.0] * len(shape)).double().requires_grad_()
    y = (0.5 * x.detach() + 0.1 * torch.rand(1, 1, *shape, generator=generator, dtype=torch.float64))
    fast, direct = lncc_loss(x, y, window=5), _direct_lncc(x, y, 5)
    assert float(fast.detach()) == pytest.approx(float(direct.detach()), rel=1e-9)
    fast_gradient, = torch.autograd.grad(fast, x)
    direct_gradient, = torch.autograd.grad(direct, x)
    assert torch.allclose(fast_gradient, direct_gradient, rtol=1e-6, atol=1e-10)


def _direct_mutual_information(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bins: int) -> torch.Tensor:
    """-MI written out from the cubic B-spline kernel evaluated at every bin, for images (B, 1, *spatial) in [0, 1]:
    a value v sits at 1 + v (bins - 3) bins and adds beta3(that - j) to bin j (Mattes et al. 2003)."""
    def parzen(values: torch.Tensor) -> torch.Tensor:
        t = (1 + values.reshape(values.shape[0], -1, 1) * (bins - 3) - torch.arange(bins, dtype=values.dtype)).abs()
        outer = torch.where(t < 2, (2 - t).clamp_min(0) ** 3 / 6, 0)
        return torch.where(t < 1, (4 - 6 * t ** 2 + 3 * t ** 3) / 6, outer)

    weight = weight.reshape(weight.shape[0], -1, 1, 1)
    joint = (parzen(x).unsqueeze(3) * parzen(y).unsqueeze(2) * weight).sum(dim=1) / weight.sum(dim=1)
    marginals = joint.sum(dim=2, keepdim=True) * joint.sum(dim=1, keepdim=True)
    information = (joint * (torch.log(joint + 1e-10) - torch.log(marginals + 1e-10))).sum(dim=(1, 2))
    return -information.mean()


def test_mi_value_and_gradient_match_a_direct_computation():
    generator = torch.Generator().manual_seed(6)
    x = gaussian_smooth(torch.rand(2, 1, 9, 8, generator=generator, dtype=torch.float64), [1.0, 1.0])
    x = ((x - x.min()) / (x.max() - x.min())).requires_grad_()
    y = 0.6 * x.detach() + 0.4 * torch.rand(x.shape, generator=generator, dtype=torch.float64)
    weight = torch.rand(x.shape, generator=generator, dtype=torch.float64)
    fast, direct = mutual_information_loss(x, y, weight, bins=8), _direct_mutual_information(x, y, weight, 8)
    assert float(fast.detach()) == pytest.approx(float(direct.detach()), rel=1e-9)
    fast_gradient, = torch.autograd.grad(fast, x)
    direct_gradient, = torch.autograd.grad(direct, x)
    assert torch.allclose(fast_gradient, direct_gradient, rtol=1e-6, atol=1e-10)


def test_lncc_ignores_a_local_linear_change_of_contrast(image):
    loss = functools.partial(lncc_loss, window=7)
    assert float(loss(3.0 * image + 0.2, image)) < 0.05 < float(loss(torch.roll(image, 3, dims=-1), image))


@pytest.mark.parametrize("name", ["mi", "ssim", "lncc", "mse"])
def test_a_zero_weight_removes_voxels_from_every_similarity(image, name):
    """Spoil the right half of the image: weighted 0 there (and a window's reach beyond), the loss is the left's."""
    loss = similarity_loss(name, image[0, 0].numel(), image.device, lncc_window=7)
    spoiled = image.clone()
    spoiled[..., 32:] = torch.rand(spoiled[..., 32:].shape, generator=torch.Generator().manual_seed(5))
    weight = torch.zeros_like(image)
    weight[..., :24] = 1.0
    assert float(loss(spoiled, image, weight)) == pytest.approx(float(loss(image, image, weight)), abs=0.02)
    assert float(loss(spoiled, image)) > float(loss(image, image)) + 0.02


def test_mi_histogram_never_leaves_its_bins_whatever_the_values():
    """NaN and values far outside [0, 1] used to index the histogram out of range (a native crash)."""
    wild = torch.tensor([[[[float("nan"), 1e30, -1e30, 0.5]]]]).expand(1, 1, 4, 4).contiguous()
    assert torch.isfinite(mutual_information_loss(wild, torch.rand(1, 1, 4, 4)))


def test_volumes_in_3d_use_their_own_similarity_and_slices_the_2d_one():
    """similarity_3d (LNCC by default: MI over a whole-field-of-view volume held it at the identity) applies to
    volumes registered in 3-D only; 2-D images and the slices of a stack keep ``similarity``."""
    from ODERegistrationLib.engine.core.losses import lncc_loss
    from ODERegistrationLib.engine.core.optimizer import _Level
    from ODERegistrationLib.engine.parameters import RegistrationParameters

    parameters = RegistrationParameters(similarity="mse", similarity_3d="lncc", lncc_window=9)
    volume = torch.rand(1, 1, 16, 16, 16)
    slices = torch.rand(4, 1, 16, 16)
    volumes_similarity = _Level(volume, volume, None, (1.0, 1.0, 1.0), parameters).similarity
    assert volumes_similarity.func is lncc_loss and volumes_similarity.keywords == {"window": 9}
    assert getattr(_Level(slices, slices, None, (1.0, 1.0), parameters).similarity, "func", None) is not lncc_loss
    assert RegistrationParameters().similarity_3d == "lncc" and RegistrationParameters().similarity == "mi+ssim"
