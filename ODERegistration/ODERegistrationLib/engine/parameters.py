"""Registration parameters: one frozen dataclass so that a run is fully described by one value."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

SIMILARITIES = ("mi+ssim", "ssim", "mse", "mi")
MODES = ("auto", "2d", "3d", "slices")
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class RegistrationParameters:
    """Settings of the multi-resolution ODE registration; defaults are the measured fast ones (see PRESETS).

    The regularization weights follow the paper: alpha = 1/K for inverse consistency and gamma = lambda/K for the
    displacement magnitude, K being the number of pyramid levels.
    """

    iterations: int = 400
    levels: int = 2
    learning_rate: float = 5e-4
    regularization_lambda: float = 5.0
    similarity: str = "mi+ssim"
    smoothing_sigma: float = 2.0
    """Gaussian LowPass of the velocity, in voxels of the finest in-plane spacing, at every level."""
    conv_layers: int = 4
    channels: int = 24
    kernel_size_2d: int = 5
    kernel_size_3d: int = 3
    integration_steps: int = 7
    """Scaling-and-squaring steps: the velocity is divided by 2**steps and then composed with itself."""
    net_downsampling: int = 4
    """The net, its velocity and exp live on a grid this many times coarser than each level (1: the paper).
    The smoothed velocity is band-limited anyway, so a coarser grid loses little and saves most of the cost."""
    image_downsampling: int = 2
    """The finest pyramid level is the image shrunk this many times (1, 2 or 4; 1: the paper); the fitted fields
    are upsampled to the image at the end. Each halving divides an iteration's cost by about 4 in 2-D, 8 in 3-D."""
    folding_weight: float = 100.0
    """Weight of the folding guard, mean(max(0, 0.1 - det J)) of both maps at every level (0: the paper, which has
    no such term); it is zero unless a map compresses more than tenfold somewhere."""
    convergence_tolerance: float = 1e-3
    """Stop early when the best loss of the last ``convergence_window`` iterations improved by less than this
    fraction on the window before (0: run all iterations, as the paper)."""
    convergence_window: int = 50
    mode: str = "auto"
    device: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.iterations >= 1, f"iterations must be at least 1, not {self.iterations}"),
            (1 <= self.levels <= 6, f"levels must be between 1 and 6, not {self.levels}"),
            (self.learning_rate > 0, f"learning rate must be positive, not {self.learning_rate}"),
            (self.regularization_lambda >= 0, f"lambda must be non-negative, not {self.regularization_lambda}"),
            (self.similarity in SIMILARITIES, f"similarity must be one of {', '.join(SIMILARITIES)}"),
            (self.smoothing_sigma >= 0, f"smoothing sigma must be non-negative, not {self.smoothing_sigma}"),
            (self.conv_layers >= 2, f"conv layers must be at least 2, not {self.conv_layers}"),
            (self.channels >= 1, f"channels must be at least 1, not {self.channels}"),
            (self.kernel_size_2d % 2 == 1 and self.kernel_size_3d % 2 == 1, "kernel sizes must be odd"),
            (self.integration_steps >= 0, f"integration steps must be non-negative, not {self.integration_steps}"),
            (self.net_downsampling >= 1, f"net downsampling must be at least 1, not {self.net_downsampling}"),
            (self.image_downsampling in (1, 2, 4), f"image downsampling must be 1, 2 or 4, not {self.image_downsampling}"),
            (self.folding_weight >= 0, f"folding weight must be non-negative, not {self.folding_weight}"),
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
    "paper": RegistrationParameters(iterations=800, net_downsampling=1, image_downsampling=1, folding_weight=0.0,
                                    convergence_tolerance=0.0),
}
"""``paper``: the published configuration (800 Adam iterations, the net at every level's full resolution, the
finest level at the image's resolution, no folding guard). ``fast``: the default; the finest level at half the
image's resolution, the net on a 4x coarser grid than each level, a folding guard, 400 iterations at most with
early stop (docs/benchmarks.md)."""
