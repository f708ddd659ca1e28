"""f_theta: the small fully convolutional net that turns coordinates into a velocity field."""
from __future__ import annotations

import torch
from torch import nn


class VelocityNet(nn.Module):
    """Conv layers (ReLU between, none after the last) mapping [grid, coarser displacement] to a velocity.

    ``fields`` independent nets run side by side as grouped convolutions: slice-by-slice registration of a stack
    gives every slice its own parameters, yet all slices are optimized in one pass. Since the input holds no image
    content, a net shared by all slices would give every slice the same velocity.
    """

    def __init__(self, dim: int, fields: int = 1, layers: int = 4, channels: int = 24, kernel_size: int = 5) -> None:
        super().__init__()
        if dim not in (2, 3):
            raise ValueError(f"VelocityNet works in 2-D or 3-D, not {dim}-D")
        conv = nn.Conv2d if dim == 2 else nn.Conv3d
        widths = [2 * dim] + [channels] * (layers - 1) + [dim]
        modules: list[nn.Module] = []
        for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
            modules.append(conv(width_in * fields, width_out * fields, kernel_size, padding=kernel_size // 2, groups=fields))
            if index < layers - 1:
                modules.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*modules)
        last = self.layers[-1]
        nn.init.normal_(last.weight, std=1e-5)
        nn.init.zeros_(last.bias)
        self.dim = dim
        self.fields = fields

    def forward(self, grids: torch.Tensor, coarser_displacement: torch.Tensor) -> torch.Tensor:
        """grids: (directions, dim, *spatial), the +grid and -grid of the two directions; coarser_displacement:
        (directions * fields, dim, *spatial), direction-major -> velocity of that shape.

        The directions run as one batch of the same net, which halves the number of (small) convolution calls.
        """
        directions = grids.shape[0]
        spatial = coarser_displacement.shape[2:]
        coarser = coarser_displacement.reshape(directions, self.fields, self.dim, *spatial)
        inputs = torch.cat([grids.unsqueeze(1).expand_as(coarser), coarser], dim=2)
        velocity = self.layers(inputs.reshape(directions, self.fields * 2 * self.dim, *spatial))
        return velocity.reshape(directions * self.fields, self.dim, *spatial)
