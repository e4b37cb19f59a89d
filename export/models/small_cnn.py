"""A small, fast CNN backbone for CPU training and quick experiments.

A stride-2 stem and three stride-2 residual stages (output stride 16), conv3x3-BN-ReLU throughout.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelInputError


class _ConvBNReLU(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class _Stage(nn.Module):
    """Strided conv3x3 then a residual conv3x3 pair: ``[n, c_in, h, w] -> [n, c_out, h/2, w/2]``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.down = _ConvBNReLU(c_in, c_out, 2)
        self.body = nn.Sequential(
            _ConvBNReLU(c_out, c_out),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        return self.act(x + self.body(x))


class SmallCNN(nn.Module):
    """Small residual CNN: ``forward(x: float32[n, 3, h, w]) -> float32[n, out_channels, h/16, w/16]`` (ceil).

    A 128x128 input gives an 8x8 map of ``widths[-1]`` (default 256) channels; ~1.2 M parameters.

    Args:
        widths: channels of the stem (stride 2) and of the three following stride-2 stages.
    """

    def __init__(self, widths: tuple[int, int, int, int] = (32, 64, 128, 256)) -> None:
        super().__init__()
        if len(widths) != 4 or any(int(w) <= 0 for w in widths):
            raise ModelInputError(f"SmallCNN widths must be 4 positive channel counts, got {widths!r}")
        self.stem = _ConvBNReLU(3, widths[0], 2)
        self.stages = nn.Sequential(*(_Stage(a, b) for a, b in zip(widths[:-1], widths[1:])))
        self.out_channels = int(widths[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ModelInputError(f"SmallCNN expects float[n, 3, h, w], got shape {tuple(x.shape)}")
        return self.stages(self.stem(x))

