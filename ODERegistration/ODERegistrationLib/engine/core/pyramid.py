"""Gaussian image pyramid: which axes halve at each level, and the smoothed, downsampled images."""
from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import torch

from .fields import gaussian_smooth, resize_field

MIN_LEVEL_SIZE = 8
MAX_HALVINGS = 3


def pyramid_shapes(shape: Sequence[int], spacing: Sequence[float], levels: int) -> List[Tuple[Tuple[int, ...], Tuple[float, ...]]]:
    """Grid size and spacing of each level, finest first.

    An axis is halved only while it stays at least MIN_LEVEL_SIZE voxels and its spacing is at most twice the finest
    spacing of that level, so thick-slice axes keep their slices until the in-plane spacing catches up.
    """
    shape, spacing = tuple(int(n) for n in shape), tuple(float(s) for s in spacing)
    result = [(shape, spacing)]
    for _ in range(levels - 1):
        finest = min(spacing)
        halve = [n // 2 >= MIN_LEVEL_SIZE and s <= 2.0 * finest for n, s in zip(shape, spacing)]
        shape = tuple((n + 1) // 2 if h else n for n, h in zip(shape, halve))
        spacing = tuple(s * (r - 1) / max(n - 1, 1) for s, r, n in zip(spacing, result[-1][0], shape))
        result.append((shape, spacing))
    return result


def halvings_to(spacing: Sequence[float], working_spacing_mm: float) -> int:
    """How often the image can be halved before its finest spacing exceeds the working spacing (at most 3)."""
    finest, halvings = min(spacing), 0
    while halvings < MAX_HALVINGS and finest * 2 ** (halvings + 1) <= working_spacing_mm:
        halvings += 1
    return halvings


def working_pyramid_shapes(shape: Sequence[int], spacing: Sequence[float], levels: int, halvings: int,
                           min_voxels: int) -> Tuple[List[Tuple[Tuple[int, ...], Tuple[float, ...]]], int]:
    """Levels from the image down to the coarsest working one, and how many of the finest are skipped (at most
    ``halvings``, and none that would leave the finest working level below ``min_voxels`` voxels per image):
    the optimizer works on the last ``levels`` of them."""
    shapes = pyramid_shapes(shape, spacing, levels + halvings)
    skipped = max(k for k in range(halvings + 1) if k == 0 or math.prod(shapes[k][0]) >= min_voxels)
    return shapes[:skipped + levels], skipped


def gaussian_pyramid(image: torch.Tensor, levels: Sequence[Tuple[Tuple[int, ...], Tuple[float, ...]]]) -> List[torch.Tensor]:
    """Images of each level (finest first): anti-alias with sigma = half the shrink factor, then resize."""
    images = [image]
    for shape, _ in levels[1:]:
        previous = images[-1]
        factors = [p / n for p, n in zip(previous.shape[2:], shape)]
        sigmas = [0.5 * f if f > 1.0 else 0.0 for f in factors]
        images.append(resize_field(gaussian_smooth(previous, sigmas), shape))
    return images
