"""Registration parameters: one frozen dataclass so that a run is fully described by one value."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

SIMILARITIES = ("mi+ssim", "lncc", "ssim", "mse", "mi")
REGIONS = ("auto", "whole")
MAX_LEARNING_RATE = 1.0
"""Adam moves every weight by up to the learning rate per step: above 1 the net's weights, which start near 0.1,
are thrown around and the run can only diverge."""
MODES = ("auto", "2d", "3d", "slices")
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class RegistrationParameters:
    """Settings of the multi-resolution ODE registration; defaults are the measured fast ones (see PRESETS).

    The regularization weights follow the paper: alpha = 1/K for inverse consistency and gamma = lambda/K for the
    displacement magnitude, K being the number of pyramid levels.
    """

    iterations: int = 250
    """Most Adam iterations for 2-D images and slice stacks: on the benchmark, Dice peaks around 250 and the loss
    still creeps down at 400 (docs/benchmarks.md), so the early stop rarely ends a run before."""
    iterations_3d: int = 200
    """Most Adam iterations for volumes: at their coarser working grid, Dice stops improving by 200 on the
    benchmark, while the loss still creeps down (so early stop alone would not end the run)."""
    levels: int = 2
    learning_rate: float = 5e-4
    regularization_lambda: float = 5.0
    similarity: str = "mi+ssim"
    smoothing_sigma_mm: float = 3.125
    """Gaussian LowPass of the velocity, in millimetres, applied on the net grid of every level (where the velocity
    lives), so it means the same smoothing whatever the image spacing and the net grid. 3.125 mm is the paper's
    2 voxels at ACDC's 1.5625 mm."""
    conv_layers: int = 4
    channels: int = 24
    kernel_size_2d: int = 5
    kernel_size_3d: int = 3
    integration_steps: int = 7
    """Scaling-and-squaring steps: the velocity is divided by 2**steps and then composed with itself."""
    net_downsampling: int = 2
    """The net, its velocity and exp live on a grid this many times coarser than each level (1: the paper).
    The smoothed velocity is band-limited anyway, so a coarser grid loses little and saves most of the cost;
    inside a region around the heart, 2 is more accurate than 4 (docs/benchmarks.md)."""
    working_spacing_mm: float = 3.2
    """The finest pyramid level is the image halved as often as its spacing stays at most this (0: never, the
    paper); the fitted fields are upsampled to the image at the end. In physical units, so that a 1.5 mm cine
    slice, a 1.5 mm volume and a 0.8 mm volume are all registered at about 3 mm. A halving divides an
    iteration's cost by ~4 in 2-D and ~8 in 3-D."""
    folding_weight: float = 100.0
    """Weight of the folding guard, mean(max(0, 0.1 - det J)) of both maps at every level (0: the paper, which has
    no such term); it is zero unless a map compresses more than tenfold somewhere."""
    inverse_refinement_steps: int = 20
    """Fixed-point steps that turn the net's backward map into the numerical inverse of the forward one at the
    end, on the whole fixed grid the fields are written on (0: the paper, which outputs the net's backward map as
    it is); kept except where it would fold (fields.py)."""
    convergence_tolerance: float = 1e-3
    """Stop early when the best loss of the last ``convergence_window`` iterations improved by less than this
    fraction on the window before (0: run all iterations, as the paper)."""
    convergence_window: int = 50
    region: str = "auto"
    """Where to register: ``auto`` fits the map inside the box of the moving labels (or of the fixed mask) plus
    ``region_margin_mm`` and continues it smoothly to the identity outside; ``whole`` fits the whole image. An
    explicit box is an input of :func:`register_images`, not a parameter."""
    region_margin_mm: float = 25.0
    """Margin around the labels' bounding box, in millimetres, of the ``auto`` region."""
    mode: str = "auto"
    device: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        not_finite = [f.name for f in dataclasses.fields(self)
                      if isinstance(getattr(self, f.name), float) and not math.isfinite(getattr(self, f.name))]
        if not_finite:
            raise ValueError(f"{not_finite[0].replace('_', ' ')} must be a finite number, not {getattr(self, not_finite[0])}")
        checks = [
            (min(self.iterations, self.iterations_3d) >= 1, "iterations must be at least 1"),
            (1 <= self.levels <= 6, f"levels must be between 1 and 6, not {self.levels}"),
            (0 < self.learning_rate <= MAX_LEARNING_RATE,
             f"learning rate must be above 0 and at most {MAX_LEARNING_RATE:g}, not {self.learning_rate:g}"),
            (self.regularization_lambda >= 0, f"lambda must be non-negative, not {self.regularization_lambda}"),
            (self.similarity in SIMILARITIES, f"similarity must be one of {', '.join(SIMILARITIES)}"),
            (self.smoothing_sigma_mm >= 0, f"smoothing sigma must be non-negative, not {self.smoothing_sigma_mm}"),
            (self.region in REGIONS, f"region must be one of {', '.join(REGIONS)}"),
            (self.region_margin_mm >= 0, f"region margin must be non-negative, not {self.region_margin_mm}"),
            (self.conv_layers >= 2, f"conv layers must be at least 2, not {self.conv_layers}"),
            (self.channels >= 1, f"channels must be at least 1, not {self.channels}"),
            (self.kernel_size_2d % 2 == 1 and self.kernel_size_3d % 2 == 1, "kernel sizes must be odd"),
            (self.integration_steps >= 0, f"integration steps must be non-negative, not {self.integration_steps}"),
            (self.net_downsampling >= 1, f"net downsampling must be at least 1, not {self.net_downsampling}"),
            (self.working_spacing_mm >= 0, f"working spacing must be non-negative, not {self.working_spacing_mm}"),
            (self.folding_weight >= 0, f"folding weight must be non-negative, not {self.folding_weight}"),
            (self.inverse_refinement_steps >= 0, "inverse refinement steps must be non-negative"),
            (self.convergence_tolerance >= 0, "convergence tolerance must be non-negative"),
            (self.convergence_window >= 1, "convergence window must be at least 1"),
            (self.mode in MODES, f"mode must be one of {', '.join(MODES)}"),
            (self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def inverse_consistency_weight(self) -> float:
        """alpha = 1/K."""
        return 1.0 / self.levels

    @property
    def magnitude_weight(self) -> float:
        """gamma = lambda/K."""
        return self.regularization_lambda / self.levels

    def replace(self, **changes) -> "RegistrationParameters":
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


PRESETS = {
    "fast": RegistrationParameters(),
    "paper": RegistrationParameters(iterations=800, iterations_3d=800, net_downsampling=1, working_spacing_mm=0.0,
                                    folding_weight=0.0, inverse_refinement_steps=0, convergence_tolerance=0.0,
                                    region="whole"),
}
"""``paper``: the published configuration (800 Adam iterations, every level and the net at full resolution, no
folding guard, the net's backward map as it is). ``fast``: the default; the finest level at half the image's
resolution (a quarter for volumes), the net on a 4x coarser grid than each level, a folding guard, at most 400
iterations (200 for volumes) with early stop, the backward map refined into the forward's inverse
(docs/benchmarks.md)."""
