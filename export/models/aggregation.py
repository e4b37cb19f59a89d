"""Aggregation of a feature map into one descriptor: GeM, NetVLAD, and GeM + spatial layout."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelConfigError, ModelInputError


def _check_map(x: torch.Tensor, channels: int, who: str) -> None:
    if x.ndim != 4 or x.shape[1] != channels:
        raise ModelInputError(f"{who} expects a feature map float[n, {channels}, h, w], got {tuple(x.shape)}")


class GeM(nn.Module):
    """Generalised-mean pooling (Radenovic et al., TPAMI 2018): ``(mean_hw clamp(x, eps)^p)^(1/p)``.

    ``[n, c, h, w] -> [n, c]``. ``p`` is learnable (init 3) unless ``learn_p=False``; p=1 is average pooling,
    p -> inf max pooling.
    """

    def __init__(self, in_channels: int, p: float = 3.0, eps: float = 1e-6, learn_p: bool = True) -> None:
        super().__init__()
        if not p > 0:
            raise ModelConfigError(f"GeM p must be > 0, got {p}")
        self.in_channels = self.out_dim = int(in_channels)
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=learn_p)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_map(x, self.in_channels, "GeM")
        p = self.p.clamp(min=1.0)
        return x.clamp(min=self.eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


class NetVLAD(nn.Module):
    """NetVLAD (Arandjelovic et al., CVPR 2016) with soft assignment and intra-normalisation.

    ``[n, c, h, w] -> [n, clusters * d]`` where ``d = reduce_dim or c``. Local descriptors are optionally reduced
    by a 1x1 conv, L2-normalised, softly assigned to ``clusters`` centroids (1x1 conv + softmax), residuals to
    each centroid summed, each cluster's residual L2-normalised (intra-normalisation), and the whole vector
    L2-normalised.
    """

    def __init__(self, in_channels: int, clusters: int = 16, reduce_dim: int | None = 128, alpha: float = 10.0) -> None:
        super().__init__()
        if clusters <= 0 or (reduce_dim is not None and reduce_dim <= 0):
            raise ModelConfigError(f"NetVLAD needs clusters > 0 and reduce_dim > 0 or None, got {clusters}, {reduce_dim}")
        self.in_channels = int(in_channels)
        self.reduce = nn.Conv2d(in_channels, reduce_dim, 1) if reduce_dim else None
        d = int(reduce_dim or in_channels)
        self.clusters, self.dim = int(clusters), d
        self.out_dim = self.clusters * d
        self.centroids = nn.Parameter(F.normalize(torch.randn(clusters, d), dim=1))
        # Initialised as in the paper: w_k = 2 alpha c_k, b_k = -alpha |c_k|^2 (soft-assignment to nearest centroid).
        self.assign = nn.Conv2d(d, clusters, 1, bias=True)
        with torch.no_grad():
            self.assign.weight.copy_((2 * alpha * self.centroids).view(clusters, d, 1, 1))
            self.assign.bias.copy_(-alpha * self.centroids.pow(2).sum(dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_map(x, self.in_channels, "NetVLAD")
        if self.reduce is not None:
            x = self.reduce(x)
        x = F.normalize(x, dim=1)
        a = self.assign(x).flatten(2).softmax(dim=1)  # [n, K, hw]
        feats = x.flatten(2)  # [n, d, hw]
        vlad = torch.bmm(a, feats.transpose(1, 2)) - a.sum(dim=2, keepdim=True) * self.centroids.unsqueeze(0)  # [n,K,d]
        vlad = F.normalize(vlad, dim=2)
        return F.normalize(vlad.flatten(1), dim=1)


class GeMSpatial(nn.Module):
    """GeM plus the feature map's layout: ``[n, c, h, w] -> [n, c + grid * grid * reduce_dim]``.

    A pooled descriptor (GeM, NetVLAD) is blind to where things are inside the tile, so a tile and its neighbour a
    quarter of a tile away (mostly the same content, shifted) get nearly the same descriptor; map retrieval must tell
    them apart. This head appends the map reduced by a 1x1 conv (+ BN + ReLU) to ``reduce_dim`` channels and
    average-pooled to ``grid x grid`` cells, flattened in row-major order (north-up: row = north..south). Heading
    errors of the query views are a few degrees, so a fixed layout is what the data have.

    Args:
        in_channels: c. map_size: the feature map's side for the model's input size (h = w).
        grid: cells per side (<= map_size; map_size must be a multiple of it). reduce_dim: channels per cell.
    """

    def __init__(self, in_channels: int, map_size: int, grid: int = 4, reduce_dim: int = 64) -> None:
        super().__init__()
        grid = min(int(grid), int(map_size))
        if grid < 1 or map_size % grid:
            raise ModelConfigError(f"GeMSpatial: the {map_size}x{map_size} feature map is not a multiple of grid {grid}")
        self.in_channels = int(in_channels)
        self.gem = GeM(in_channels)
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, reduce_dim, 1, bias=False), nn.BatchNorm2d(reduce_dim),
                                    nn.ReLU(inplace=True))
        k = map_size // grid
        self.pool = nn.AvgPool2d(k) if k > 1 else nn.Identity()
        self.grid, self.map_size = grid, int(map_size)
        self.out_dim = self.in_channels + grid * grid * int(reduce_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_map(x, self.in_channels, "GeMSpatial")
        if x.shape[2] != self.map_size or x.shape[3] != self.map_size:
            raise ModelInputError(f"GeMSpatial was built for a {self.map_size}x{self.map_size} feature map (the "
                                  f"model's input size), got {tuple(x.shape[2:])}")
        return torch.cat([self.gem(x), self.pool(self.reduce(x)).flatten(1)], dim=1)


def layout_grid(map_size: int, grid: int = 4) -> int:
    """The layout grid GeMSpatial uses for a ``map_size`` feature map: ``grid`` when it divides ``map_size``, else
    the divisor of ``map_size`` nearest to ``grid`` (the larger on a tie), so cells stay whole feature-map cells.

    128 px inputs give a 4x4 map (grid 4); 160 px a 5x5 map (grid 5: 5 cells of 1 feature); 192 px a 6x6 map (grid 3
    of 2x2 features). Deterministic in ``map_size``, so a checkpoint rebuilds the same head.
    """
    map_size, grid = int(map_size), int(grid)
    if map_size < 1 or grid < 1:
        raise ModelConfigError(f"layout_grid: map_size and grid must be >= 1, got {map_size}, {grid}")
    if map_size % grid == 0:
        return grid
    divisors = [d for d in range(1, map_size + 1) if map_size % d == 0]
    return min(divisors, key=lambda d: (abs(d - grid), -d))


def build_aggregation(name: str, in_channels: int, **kwargs) -> nn.Module:
    """``"gem"`` -> :class:`GeM`, ``"netvlad"`` -> :class:`NetVLAD`, ``"gem_spatial"`` -> :class:`GeMSpatial`
    (needs ``map_size``); the module has ``out_dim``."""
    if name == "gem":
        return GeM(in_channels, **kwargs)
    if name == "netvlad":
        return NetVLAD(in_channels, **kwargs)
    if name == "gem_spatial":
        return GeMSpatial(in_channels, **kwargs)
    raise ModelConfigError(f"unknown aggregation {name!r}; expected 'gem', 'netvlad' or 'gem_spatial'")

