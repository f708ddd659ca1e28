"""The method itself: a coordinate net, velocities, exp, and an Euler step over resolution, fit by Adam.

At level t (K-1 = coarsest, 0 = finest) the net sees the grid and the upsampled coarser deformation, and

    D_t = up(D_{t+1}) ∘ exp(LowPass(f_theta(±grid, up(D_{t+1}))))

with +grid for the forward map D_F (fixed -> moving) and -grid for the backward map D_B. Every level adds
similarity both ways, alpha * inverse consistency and gamma * ||D - x||^2 (and, unless switched off, a folding
guard) to one loss; all levels train together.

The two directions travel as one batch: a field tensor holds D_F's fields first, then D_B's, so that every
operation (net, exp, warp, similarity) runs once for both.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch

from ..parameters import RegistrationParameters
from ..progress import CancelCheck, Progress, ProgressCallback, RegistrationCancelled
from .adam import Adam
from .device import net_memory_format, net_precision
from .fields import compose, exponentiate, gaussian_smooth, identity_grid, resize_field, warp
from .losses import folding_penalty, mean_squared_displacement, physical_weights, similarity_loss
from .network import VelocityNet
from .pyramid import gaussian_pyramid, halvings_to, working_pyramid_shapes

MIN_NET_SIZE = 16
"""The net grid is not made coarser than this many voxels along an axis."""
MIN_SIMILARITY_GAIN = 0.01
"""The early stop may end a run only once the similarity has improved by this fraction of its starting value, so
a slow start (a small learning rate, a weak gradient) is never mistaken for convergence at the identity; a run
that ends below this gain is flagged (:attr:`FieldPair.similarity_improved`)."""


EXPLODED = 100.0
"""A loss this many times above its start (at least 1) has diverged: at the identity the regularizers are zero and
the similarity terms are of order 1, so a map that makes them a hundred times larger is no registration."""


class RegistrationDiverged(RuntimeError):
    """The loss became NaN or infinite: the learning rate is too high for these images, or their values are
    extreme. A diverged map is never returned."""


@dataclass
class FieldPair:
    """Forward (fixed -> moving) and backward (moving -> fixed) displacements, normalized, on the finest grid."""

    forward: torch.Tensor
    backward: torch.Tensor
    final_loss: float
    iterations_run: int
    similarity_start: float
    """Similarity term (summed over the levels, both directions) at the identity, and at the end."""
    similarity_end: float
    earlier: Optional["FieldPair"] = None
    """The stage fitted before this one and composed into these fields (a stack's through-plane map)."""

    @property
    def similarity_improved(self) -> bool:
        """Whether this stage, or the one before, moved the images closer."""
        return (_has_moved(self.similarity_start, self.similarity_end)
                or (self.earlier is not None and self.earlier.similarity_improved))


class _Level:
    """Everything about one pyramid level that does not change while optimizing."""

    def __init__(self, fixed: torch.Tensor, moving: torch.Tensor, masks: Optional[Tuple[torch.Tensor, torch.Tensor]],
                 spacing: Sequence[float], parameters: RegistrationParameters) -> None:
        shape = tuple(fixed.shape[2:])
        self.shape = shape
        self.fields = fixed.shape[0]
        self.targets = torch.cat([fixed, moving])
        """What each direction's warped image is compared with: fixed for D_F, moving for D_B."""
        self.sources = torch.cat([moving, fixed])
        """What each direction warps."""
        self.target_masks = self.source_masks = None
        if masks is not None:
            self.target_masks, self.source_masks = torch.cat(masks), torch.cat(masks[::-1])
        self.weights = physical_weights(shape, spacing, fixed.device)
        self.net_shape = tuple(max(min(n, MIN_NET_SIZE), math.ceil(n / parameters.net_downsampling)) for n in shape)
        grid = identity_grid(self.net_shape, fixed.device)
        self.net_grids = torch.cat([grid, -grid])
        net_spacing = [s * max(n - 1, 1) / max(m - 1, 1) for s, n, m in zip(spacing, shape, self.net_shape)]
        self.velocity_sigmas = [parameters.smoothing_sigma_mm / s for s in net_spacing]
        name = parameters.similarity if len(shape) == 2 else parameters.similarity_3d
        self.similarity = similarity_loss(name, math.prod(shape), fixed.device, parameters.seed,
                                          lncc_window=parameters.lncc_window)


def optimize_fields(fixed: torch.Tensor, moving: torch.Tensor, spacing: Sequence[float],
                    parameters: RegistrationParameters, progress: ProgressCallback = None,
                    cancel: CancelCheck = None,
                    masks: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> FieldPair:
    """Fit the forward and backward maps between two images of shape (B, 1, *spatial), intensities in [0, 1].

    ``masks`` (fixed, moving), each of the images' shape with values in [0, 1], restrict the similarity: a voxel
    counts as much as its target's mask times the warped mask of its source, as elastix and ANTs use masks.

    B > 1 registers B independent pairs (the slices of a stack), each with its own net parameters.
    ``spacing`` is the voxel size of the spatial axes in array order. The fields come back at the images' size
    whatever the working resolution (``working_spacing_mm``).
    """
    if fixed.shape != moving.shape:
        raise ValueError(f"fixed {tuple(fixed.shape)} and moving {tuple(moving.shape)} must have one shape")
    dim = fixed.dim() - 2
    fields = fixed.shape[0]
    iterations = parameters.iterations if dim == 2 else parameters.iterations_3d
    shapes, skipped = working_pyramid_shapes(fixed.shape[2:], spacing, parameters.levels,
                                             halvings_to(spacing, parameters.working_spacing_mm),
                                             parameters.min_working_voxels)
    fixed_pyramid, moving_pyramid = gaussian_pyramid(fixed, shapes), gaussian_pyramid(moving, shapes)
    mask_pyramids = [None] * len(shapes)
    if masks is not None:
        mask_pyramids = list(zip(*(gaussian_pyramid(mask, shapes) for mask in masks)))
    levels = [_Level(f, m, k, s, parameters)
              for f, m, k, (_, s) in list(zip(fixed_pyramid, moving_pyramid, mask_pyramids, shapes))[skipped:]]

    kernel = parameters.kernel_size_2d if dim == 2 else parameters.kernel_size_3d
    with torch.random.fork_rng(devices=[]):  # the seed is this run's, the caller's random state stays as it was
        torch.manual_seed(parameters.seed)
        net = VelocityNet(dim, fields, parameters.conv_layers, parameters.channels, kernel).to(
            fixed.device, memory_format=net_memory_format(fixed.device, dim))
    optimizer = Adam(net.parameters(), lr=parameters.learning_rate, warmup_steps=parameters.warmup_iterations)

    start = time.perf_counter()
    losses: List[float] = []
    similarities: List[float] = []
    iteration = 0
    for iteration in range(1, iterations + 1):
        if cancel is not None and cancel():
            raise RegistrationCancelled(f"cancelled after {iteration - 1} iterations")
        optimizer.zero_grad()
        _, level_losses, similarity = _run_levels(net, levels, parameters)
        loss = torch.stack(level_losses).sum()
        losses.append(float(loss.detach()))
        similarities.append(float(similarity))
        if not math.isfinite(losses[-1]) or losses[-1] > EXPLODED * max(1.0, abs(losses[0])):
            raise RegistrationDiverged(
                f"the optimization diverged at iteration {iteration} (loss {losses[-1]:.3g}, started at "
                f"{losses[0]:.3g}): lower the learning rate ({parameters.learning_rate:g}) or check the images' "
                "intensities")
        loss.backward()
        optimizer.step()
        if progress is not None:
            progress(Progress(iteration, iterations, losses[-1],
                              tuple(float(v.detach()) for v in level_losses), time.perf_counter() - start))
        if _converged(losses, similarities, parameters):
            break

    with torch.no_grad():
        both, _, similarity = _run_levels(net, levels, parameters)
        if not torch.isfinite(both).all():
            raise RegistrationDiverged(f"the optimization diverged (non-finite fields after {iteration} iterations): "
                                       f"lower the learning rate ({parameters.learning_rate:g})")
        forward, backward = both.split(fields)
        forward, backward = (resize_field(field, fixed.shape[2:]) for field in (forward, backward))
    return FieldPair(forward, backward, losses[-1], iteration, similarities[0], float(similarity))


def _has_moved(start: float, current: float) -> bool:
    return start - current > MIN_SIMILARITY_GAIN * abs(start)


def _converged(losses: List[float], similarities: List[float], parameters: RegistrationParameters) -> bool:
    """True when the best loss of the last window improved by less than the tolerance on the window before, once
    the similarity has started to improve."""
    window = parameters.convergence_window
    if parameters.convergence_tolerance <= 0 or len(losses) < 2 * window:
        return False
    if not _has_moved(similarities[0], min(similarities)):
        return False
    previous, recent = min(losses[-2 * window:-window]), min(losses[-window:])
    return previous - recent < parameters.convergence_tolerance * abs(recent)


def _run_levels(net: VelocityNet, levels: List[_Level],
                parameters: RegistrationParameters) -> Tuple[torch.Tensor, List[torch.Tensor], torch.Tensor]:
    """One coarse-to-fine pass; returns the finest fields of both directions, each level's loss (finest first) and
    the similarity term summed over the levels (detached, for the early stop)."""
    both = None
    losses: List[torch.Tensor] = []
    similarity = torch.zeros(())
    for level in reversed(levels):
        both = _euler_step(net, level, both, parameters)
        loss, level_similarity = _level_loss(level, both, parameters)
        losses.insert(0, loss)
        similarity = similarity + level_similarity.detach().cpu()
    return both, losses, similarity


def _euler_step(net: VelocityNet, level: _Level, coarser: torch.Tensor | None,
                parameters: RegistrationParameters) -> torch.Tensor:
    """D_t = up(D_{t+1}) ∘ exp(LowPass(f_theta(±grid, up(D_{t+1})))), the net and exp on the level's net grid."""
    if coarser is None:
        coarser = torch.zeros(2 * level.fields, len(level.shape), *level.shape, device=level.targets.device)
    else:
        coarser = resize_field(coarser, level.shape)
    with net_precision(coarser.device):
        velocity = net(level.net_grids, resize_field(coarser, level.net_shape))
    velocity = gaussian_smooth(velocity.float(), level.velocity_sigmas)
    step = resize_field(exponentiate(velocity, parameters.integration_steps), level.shape)
    return compose(coarser, step)


def _level_loss(level: _Level, both: torch.Tensor,
                parameters: RegistrationParameters) -> Tuple[torch.Tensor, torch.Tensor]:
    """The level's loss and its similarity term. Sum over the two directions of each term; the batched terms average
    over both, hence the factor 2."""
    forward, backward = both.split(level.fields)
    weight = None
    if level.target_masks is not None:  # no gradient through the mask: a map must not gain by leaving it
        weight = level.target_masks * warp(level.source_masks, both.detach())
    similarity = level.similarity(warp(level.sources, both), level.targets, weight)
    inverse_consistency = mean_squared_displacement(compose(torch.cat([backward, forward]), both), level.weights)
    magnitude = mean_squared_displacement(both, level.weights)
    loss = similarity + parameters.inverse_consistency_weight * inverse_consistency + parameters.magnitude_weight * magnitude
    if parameters.folding_weight > 0:
        loss = loss + parameters.folding_weight * folding_penalty(both)
    return 2.0 * loss, similarity
