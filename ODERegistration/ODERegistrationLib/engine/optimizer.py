"""The method itself: a coordinate net, velocities, exp, and an Euler step over resolution, fit by Adam.

At level t (K-1 = coarsest, 0 = finest) the net sees the grid and the upsampled coarser deformation, and

    D_t = up(D_{t+1}) ∘ exp(LowPass(f_theta(±grid, up(D_{t+1}))))

with +grid for the forward map D_F (fixed -> moving) and -grid for the backward map D_B. Every level adds
similarity both ways, alpha * inverse consistency and gamma * ||D - x||^2 to one loss; all levels train together.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import torch

from .fields import compose, exponentiate, gaussian_smooth, identity_grid, resize_field, warp
from .losses import mean_squared_displacement, physical_weights, similarity_loss
from .network import VelocityNet
from .parameters import RegistrationParameters
from .progress import CancelCheck, Progress, ProgressCallback, RegistrationCancelled
from .pyramid import gaussian_pyramid, pyramid_shapes

MIN_NET_SIZE = 16
"""The net grid is not made coarser than this many voxels along an axis."""


@dataclass
class FieldPair:
    """Forward (fixed -> moving) and backward (moving -> fixed) displacements, normalized, on the finest grid."""

    forward: torch.Tensor
    backward: torch.Tensor
    final_loss: float
    iterations_run: int


class _Level:
    """Everything about one pyramid level that does not change while optimizing."""

    def __init__(self, fixed: torch.Tensor, moving: torch.Tensor, spacing: Sequence[float], finest_spacing: float,
                 parameters: RegistrationParameters) -> None:
        shape = tuple(fixed.shape[2:])
        self.shape = shape
        self.fixed, self.moving = fixed, moving
        self.weights = physical_weights(shape, spacing, fixed.device)
        self.net_shape = tuple(max(min(n, MIN_NET_SIZE), math.ceil(n / parameters.net_downsampling)) for n in shape)
        self.net_grid = identity_grid(self.net_shape, fixed.device)
        self.velocity_sigmas = [parameters.smoothing_sigma * finest_spacing / s * (m - 1) / max(n - 1, 1)
                                for s, n, m in zip(spacing, shape, self.net_shape)]
        self.similarity = similarity_loss(parameters.similarity, math.prod(shape), fixed.device, parameters.seed)


def optimize_fields(fixed: torch.Tensor, moving: torch.Tensor, spacing: Sequence[float],
                    parameters: RegistrationParameters, progress: ProgressCallback = None,
                    cancel: CancelCheck = None) -> FieldPair:
    """Fit the forward and backward maps between two images of shape (B, 1, *spatial), intensities in [0, 1].

    B > 1 registers B independent pairs (the slices of a stack), each with its own net parameters.
    ``spacing`` is the voxel size of the spatial axes in array order.
    """
    if fixed.shape != moving.shape:
        raise ValueError(f"fixed {tuple(fixed.shape)} and moving {tuple(moving.shape)} must have one shape")
    dim = fixed.dim() - 2
    fields = fixed.shape[0]
    shapes = pyramid_shapes(fixed.shape[2:], spacing, parameters.levels)
    fixed_pyramid, moving_pyramid = gaussian_pyramid(fixed, shapes), gaussian_pyramid(moving, shapes)
    finest_spacing = min(spacing)
    levels = [_Level(f, m, s, finest_spacing, parameters) for f, m, (_, s) in zip(fixed_pyramid, moving_pyramid, shapes)]

    torch.manual_seed(parameters.seed)
    kernel = parameters.kernel_size_2d if dim == 2 else parameters.kernel_size_3d
    net = VelocityNet(dim, fields, parameters.conv_layers, parameters.channels, kernel).to(fixed.device)
    optimizer = torch.optim.Adam(net.parameters(), lr=parameters.learning_rate)

    start = time.perf_counter()
    losses: List[float] = []
    iteration = 0
    for iteration in range(1, parameters.iterations + 1):
        if cancel is not None and cancel():
            raise RegistrationCancelled(f"cancelled after {iteration - 1} iterations")
        optimizer.zero_grad(set_to_none=True)
        (_, _), level_losses = _run_levels(net, levels, parameters)
        loss = torch.stack(level_losses).sum()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(Progress(iteration, parameters.iterations, losses[-1],
                              tuple(float(v.detach()) for v in level_losses), time.perf_counter() - start))
        if _converged(losses, parameters):
            break

    with torch.no_grad():
        (forward, backward), _ = _run_levels(net, levels, parameters)
    return FieldPair(forward.detach(), backward.detach(), losses[-1], iteration)


def _converged(losses: List[float], parameters: RegistrationParameters) -> bool:
    """True when the best loss of the last window improved by less than the tolerance on the window before."""
    window = parameters.convergence_window
    if parameters.convergence_tolerance <= 0 or len(losses) < 2 * window:
        return False
    previous, recent = min(losses[-2 * window:-window]), min(losses[-window:])
    return previous - recent < parameters.convergence_tolerance * abs(recent)


def _run_levels(net: VelocityNet, levels: List[_Level],
                parameters: RegistrationParameters) -> Tuple[Tuple[torch.Tensor, torch.Tensor], List[torch.Tensor]]:
    """One coarse-to-fine pass; returns the finest (forward, backward) fields and each level's loss, finest first."""
    forward = backward = None
    losses: List[torch.Tensor] = []
    for level in reversed(levels):
        forward = _euler_step(net, level, forward, +level.net_grid, parameters)
        backward = _euler_step(net, level, backward, -level.net_grid, parameters)
        losses.insert(0, _level_loss(level, forward, backward, parameters))
    return (forward, backward), losses


def _euler_step(net: VelocityNet, level: _Level, coarser: torch.Tensor | None, grid: torch.Tensor,
                parameters: RegistrationParameters) -> torch.Tensor:
    """D_t = up(D_{t+1}) ∘ exp(LowPass(f_theta(grid, up(D_{t+1})))), the net and exp on the level's net grid."""
    fields = level.fixed.shape[0]
    if coarser is None:
        coarser = torch.zeros(fields, len(level.shape), *level.shape, device=level.fixed.device)
    else:
        coarser = resize_field(coarser, level.shape)
    velocity = gaussian_smooth(net(grid, resize_field(coarser, level.net_shape)), level.velocity_sigmas)
    step = resize_field(exponentiate(velocity, parameters.integration_steps), level.shape)
    return compose(coarser, step)


def _level_loss(level: _Level, forward: torch.Tensor, backward: torch.Tensor,
                parameters: RegistrationParameters) -> torch.Tensor:
    similarity = (level.similarity(warp(level.moving, forward), level.fixed)
                  + level.similarity(warp(level.fixed, backward), level.moving))
    inverse_consistency = (mean_squared_displacement(compose(backward, forward), level.weights)
                           + mean_squared_displacement(compose(forward, backward), level.weights))
    magnitude = (mean_squared_displacement(forward, level.weights)
                 + mean_squared_displacement(backward, level.weights))
    return (similarity + parameters.inverse_consistency_weight * inverse_consistency
            + parameters.magnitude_weight * magnitude)
