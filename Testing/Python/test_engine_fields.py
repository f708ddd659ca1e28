"""Properties of the field algebra: exp(0) = id, scaling and squaring = the ODE's flow, compose with id = no-op;
the differentiable det J agrees with the millimetre one; the folding guard; the working pyramid."""
import math

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from ODERegistrationLib.engine.core.fields import (compose, exponentiate, gaussian_smooth, identity_grid,
                                              jacobian_determinant, normalized_to_voxels, refine_inverse,
                                              resize_field, smooth_folds, warp)
from ODERegistrationLib.engine.core.losses import folding_penalty
from ODERegistrationLib.engine.pipeline.metrics import jacobian_determinant as jacobian_determinant_mm
from ODERegistrationLib.engine.core.pyramid import halvings_to, working_pyramid_shapes


def smooth_velocity(shape, amplitude=0.15):
    """A smooth, non-trivial stationary velocity (normalized units)."""
    grid = identity_grid(shape)
    x, y = grid[:, 0], grid[:, 1]
    return torch.stack([amplitude * torch.sin(math.pi * y) * torch.cos(0.5 * math.pi * x),
                        amplitude * torch.cos(math.pi * x) * torch.sin(0.5 * math.pi * y)], dim=1)


def voxel_error(displacement):
    """Mean length of a normalized displacement, in voxels."""
    return float(normalized_to_voxels(displacement).norm(dim=1).mean())


def test_exp_of_zero_velocity_is_identity():
    for shape in [(17, 23), (9, 11, 13)]:
        zero = torch.zeros(1, len(shape), *shape)
        assert torch.equal(exponentiate(zero), zero)


def test_scaling_and_squaring_matches_fine_euler_integration():
    shape = (65, 65)
    velocity = smooth_velocity(shape)
    steps = 2000
    euler = torch.zeros_like(velocity)
    for _ in range(steps):  # dphi/dt = v(phi): phi_{n+1} = phi_n + v(phi_n) / steps
        euler = euler + warp(velocity, euler) / steps
    error = (exponentiate(velocity, steps=8) - euler).abs()
    assert float(euler.abs().max()) > 0.1  # the flow moves things visibly
    assert float(error.max()) < 2e-3


def test_composition_with_identity_changes_nothing():
    field = smooth_velocity((33, 41))
    identity = torch.zeros_like(field)
    assert torch.allclose(compose(field, identity), field, atol=1e-6)
    assert torch.allclose(compose(identity, field), field, atol=1e-6)


def test_exp_of_minus_velocity_inverts_exp_of_velocity():
    velocity = smooth_velocity((65, 65), amplitude=0.1)
    round_trip = compose(exponentiate(-velocity), exponentiate(velocity))
    interior = round_trip[..., 8:-8, 8:-8]  # at the border, the flow leaves the grid and is clamped
    assert float(interior.abs().max()) < 2e-3


def test_resizing_a_field_keeps_its_normalized_values():
    constant = torch.full((1, 3, 5, 6, 7), 0.25)
    assert torch.allclose(resize_field(constant, (9, 11, 13)), constant.new_full((1, 3, 9, 11, 13), 0.25))


def test_normalized_to_voxels_uses_each_axis_length():
    field = torch.ones(1, 2, 11, 21)  # channel 0 = x along the 21-voxel axis
    voxels = normalized_to_voxels(field)
    assert float(voxels[0, 0, 0, 0]) == 10.0 and float(voxels[0, 1, 0, 0]) == 5.0


def test_gaussian_smoothing_keeps_constants_and_mean():
    constant = torch.full((1, 1, 20, 20), 3.0)
    assert torch.allclose(gaussian_smooth(constant, [2.0, 2.0]), constant)
    noise = torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    smoothed = gaussian_smooth(noise, [2.0, 0.0])
    assert smoothed.std() < 0.5 * noise.std()


def test_differentiable_jacobian_matches_the_millimetre_one_on_an_anisotropic_grid():
    shape, spacing = (24, 40), (2.5, 0.8)  # (rows, columns) and their spacing
    field = exponentiate(smooth_velocity(shape, amplitude=0.3))
    voxels = normalized_to_voxels(field)[0].movedim(0, -1).double().numpy()  # (rows, columns, (i, j))
    physical = sitk.GetImageFromArray(voxels * np.array(spacing[::-1]), isVector=True)
    physical.SetSpacing(spacing[::-1])
    expected = jacobian_determinant_mm(physical)
    assert np.allclose(jacobian_determinant(field)[0].numpy(), expected, atol=1e-4)
    assert expected.min() < 0.9 and expected.max() > 1.1  # a real deformation, not the identity


def test_folding_guard_is_zero_unless_the_map_nearly_folds():
    assert folding_penalty(exponentiate(smooth_velocity((32, 32), amplitude=0.1))) == 0.0
    squeeze = -1.2 * identity_grid((32, 32))  # x -> -0.2 x: det J = 0.04, below the guard's margin
    assert folding_penalty(squeeze) > 0.0


def test_working_spacing_sets_the_halvings_in_millimetres():
    assert halvings_to((1.5625, 1.5625), 3.2) == 1 and halvings_to((1.367, 1.367, 10.0), 3.2) == 1
    assert halvings_to((0.78, 0.78, 0.78), 3.2) == 2 and halvings_to((3.5, 3.5), 3.2) == 0
    assert halvings_to((0.1, 0.1), 100.0) == 3 and halvings_to((1.0, 1.0), 0.0) == 0


def test_image_halvings_keep_small_images_at_full_resolution():
    shapes, skipped = working_pyramid_shapes((232, 256), (1.5625, 1.5625), levels=2, halvings=1, min_voxels=10_000)
    assert skipped == 1 and [shape for shape, _ in shapes] == [(232, 256), (116, 128), (58, 64)]
    shapes, skipped = working_pyramid_shapes((128, 128, 128), (1.0, 1.0, 1.0), levels=2, halvings=2,
                                             min_voxels=10_000)
    assert skipped == 2 and shapes[skipped][0] == (32, 32, 32)
    assert working_pyramid_shapes((96, 96), (1.0, 1.0), 2, 1, min_voxels=10_000)[1] == 0  # 48 x 48: too small
    assert working_pyramid_shapes((96, 96), (1.0, 1.0), 2, 1, min_voxels=2_000)[1] == 1  # a cine's smaller floor


def test_refined_inverse_undoes_the_map_much_better_than_a_rough_guess():
    velocity = smooth_velocity((48, 40), amplitude=0.3)
    forward = exponentiate(velocity)
    rough = -forward  # first-order guess of the inverse
    refined = refine_inverse(forward, rough)
    assert voxel_error(compose(forward, refined)) < 0.05 * voxel_error(compose(forward, rough))
    round_trip = compose(refined, forward)[..., 8:-8, 8:-8]  # at the border the map leaves the grid, as above
    assert voxel_error(round_trip) < 0.05
    assert (jacobian_determinant(refined) > 0).all()


def test_where_the_exact_inverse_would_fold_the_refinement_falls_back_to_the_given_inverse_there_only():
    """A strong local expansion (det J about 12): its grid inverse compresses too fast and folds 16 voxels. The
    refinement used to be all or nothing, so such a map kept the rough inverse everywhere (patient 067 on the whole
    image: 2.7 mm round trip); now it is refined everywhere but around those voxels."""
    grid = identity_grid((64, 64))
    velocity = 2.0 * grid * torch.exp(-(grid**2).sum(1, keepdim=True) / (2 * 0.1**2))
    forward = exponentiate(velocity)
    rough = 0.7 * exponentiate(-velocity)
    refined = refine_inverse(forward, rough)
    assert (jacobian_determinant(refined) > 0).all()
    residual, rough_residual = (compose(forward, inverse).norm(dim=1) for inverse in (refined, rough))
    assert residual.mean() < 0.8 * rough_residual.mean()
    far = residual[:, 16:24, :]  # a band a quarter of the image away from the centre
    assert far.max() < 0.1 * rough_residual[:, 16:24, :].max()


def test_where_the_inverse_folds_wider_than_every_fallback_radius_its_folds_are_smoothed_instead():
    """A wide expansion in a corner (det J about 20): the refined inverse folds over a band wider than the
    fallbacks' largest radius, so every fade into the given inverse still folds. The refinement used to return the
    given inverse then (patient 067's whole image at 0.78 mm: 3.4 mm mean round trip, 78 % of the voxels above 1 mm);
    the refined inverse with its folds smoothed is a far better one that folds nowhere."""
    grid = identity_grid((128, 128))
    corner = torch.tensor([-1.0, -1.0]).reshape(1, 2, 1, 1)
    velocity = 1.5 * (grid - corner) * torch.exp(-((grid - corner) ** 2).sum(1, keepdim=True) / (2 * 0.5**2))
    forward = exponentiate(velocity)
    rough = 0.7 * exponentiate(-velocity)
    assert (jacobian_determinant(forward) > 0).all() and (jacobian_determinant(rough) > 0).all()
    refined = refine_inverse(forward, rough)
    assert (jacobian_determinant(refined) > 0).all()
    residual, rough_residual = (compose(forward, inverse).norm(dim=1).mean() for inverse in (refined, rough))
    assert residual < 0.1 * rough_residual


def folding_bump(shape, strength=1.6, width=0.08):
    """A local contraction towards the centre whose det J falls to 1 - strength there: folds for strength > 1;
    ``width`` is its Gaussian's sigma in normalized coordinates."""
    grid = identity_grid(shape)
    return -strength * grid * torch.exp(-(grid**2).sum(1, keepdim=True) / (2 * width**2))


def test_smoothing_the_folds_removes_them_and_leaves_the_rest_of_the_map_as_it_was():
    folding, clean = folding_bump((96, 96)), folding_bump((96, 96), strength=0.5)
    assert (jacobian_determinant(folding) <= 0).sum() > 0 and (jacobian_determinant(clean) > 0).all()
    both = torch.cat([folding, clean])
    smoothed = smooth_folds(both)
    assert (jacobian_determinant(smoothed) > 0).all()
    assert torch.equal(smoothed[1], clean[0])
    assert torch.equal(smoothed[0, :, :12, :12], folding[0, :, :12, :12])  # far from the centre
    assert not torch.equal(smoothed[0, :, 40:56, 40:56], folding[0, :, 40:56, 40:56])
    assert smooth_folds(clean) is clean


def test_smoothing_undoes_a_fold_wider_than_sixteen_voxels():
    """A cine's end-systolic map fitted at half resolution folded over a patch that 16 voxels of smoothing left
    folded (5 voxels of the development cine's phase 7, seed 1); the same in miniature."""
    wide = folding_bump((128, 128), strength=3.0, width=0.2)
    assert (jacobian_determinant(wide) <= 0).sum() > 500
    assert (jacobian_determinant(smooth_folds(wide)) > 0).all()


@pytest.mark.parametrize("refinement_steps", [20, 0], ids=["inverse refined", "the net's inverse"])
def test_a_fitted_map_that_folds_is_written_without_folds(small_2d_pair, monkeypatch, refinement_steps):
    """The optimizer's maps live on a coarser grid; once upsampled and written they used to fold in a few voxels
    where they compress most (ACDC patient 067, whole image, slice by slice). Here the optimizer returns maps that
    fold both ways, and the written fields, measured by the millimetre Jacobian, must fold nowhere."""
    from ODERegistrationLib.engine import RegistrationParameters, register_images
    from ODERegistrationLib.engine.pipeline import registration
    from ODERegistrationLib.engine.core.optimizer import FieldPair

    def folding_fit(fixed, moving, *args, **kwargs):
        bump = folding_bump(tuple(fixed.shape[2:])).expand(fixed.shape[0], -1, -1, -1)
        return FieldPair(bump, bump, 0.0, 1, 1.0, 0.5)

    monkeypatch.setattr(registration, "optimize_fields", folding_fit)
    parameters = RegistrationParameters(region="whole", inverse_refinement_steps=refinement_steps)
    report = register_images(small_2d_pair["fixed"], small_2d_pair["moving"], parameters).report
    assert report["folded_voxels"] == 0 and report["inverse_folded_voxels"] == 0
    assert report["min_jacobian"] > 0


def test_a_registration_leaves_no_cached_grids_and_the_caller_random_state_alone(small_2d_pair):
    """Slicer's process outlives a run: the identity-grid cache used to keep full-resolution grids (on the GPU
    too), and torch.manual_seed reset the caller's global generator."""
    from ODERegistrationLib.engine import RegistrationParameters, register_images
    from ODERegistrationLib.engine.core.fields import _cached_identity_grid

    torch.manual_seed(123)
    state = torch.get_rng_state()
    register_images(small_2d_pair["fixed"], small_2d_pair["moving"], RegistrationParameters(iterations=3, seed=7))
    assert _cached_identity_grid.cache_info().currsize == 0
    assert torch.equal(torch.get_rng_state(), state)
