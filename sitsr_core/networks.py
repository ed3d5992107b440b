"""The denoising network: a residual UNet that knows tensors only.

``UNet(z, noise_var, context) -> out`` maps a noisy target ``z`` (B, 1, H, W),
the noise level and the conditioning channels ``context`` (B, C, H, W: the LR
features followed by the ocean mask, already normalised) to one output channel
(the noise ``eps`` or the velocity ``v``, see :mod:`sitsr_core.diffusion`).
No file formats, statistics or schedules live here.

Noise-level embedding
---------------------
The network is conditioned on the **noise variance** ``sin(gamma)**2`` (the
Keras DDIM convention): a sinusoidal embedding with frequencies spaced
geometrically between 1 and ``embedding_max_frequency`` is passed through a
small MLP and injected into every residual block as a per-channel scale and shift of its
second normalisation (a per-block linear projection).

Architecture
------------
``len(widths)`` levels, ``blocks_per_level`` residual blocks per level in the
encoder and in the decoder, one 2x average-pool between encoder levels and one
2x bilinear upsampling between decoder levels, a middle of ``blocks_per_level``
blocks at the deepest width, and a skip connection from every encoder block
(and the stem) to the matching decoder block (concatenation). Inputs of any
H x W are padded internally to a multiple of ``2 ** (len(widths) - 1)`` and
cropped back. The defaults (32/64/96/128, 2 blocks) give about 3.9 M parameters.

Normalisation: :class:`DtypeGroupNorm` runs
``group_norm`` in the dtype of its input, so bf16 autocast does not cast the
activations to float32 and back around every normalisation (CUDA autocast puts
``group_norm`` on its float32 list). Statistics are still accumulated in float32
inside the kernel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import context_channels


def sinusoidal_embedding(x: torch.Tensor, dim: int, max_frequency: float = 1000.0) -> torch.Tensor:
    """Sinusoidal embedding of a per-sample scalar.

    Parameters
    ----------
    x : Tensor, shape (B,)
        The scalar (here the noise variance).
    dim : int
        Embedding size (even).
    max_frequency : float
        Largest frequency; frequencies are geometric between 1 and this value.

    Returns
    -------
    Tensor, shape (B, dim), float32: ``[sin(2 pi f x), cos(2 pi f x)]``.
    """
    half = dim // 2
    freqs = torch.exp(torch.linspace(0.0, math.log(max_frequency), half, device=x.device, dtype=torch.float32))
    angles = 2.0 * math.pi * freqs[None, :] * x.float().reshape(-1, 1)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def _groups(channels: int, max_groups: int = 8) -> int:
    for g in range(min(max_groups, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1


class DtypeGroupNorm(nn.GroupNorm):
    """GroupNorm that keeps the input's dtype under autocast (no float32 round trip)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.affine_norm(x, self.weight, self.bias)

    def affine_norm(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Group normalisation of ``x`` (B, C, H, W) with the given per-channel ``weight`` and ``bias`` (C,)."""
        if x.dtype == weight.dtype:
            return F.group_norm(x, self.num_groups, weight, bias, self.eps)
        with torch.autocast(x.device.type, enabled=False):
            return F.group_norm(x, self.num_groups, weight.to(x.dtype), bias.to(x.dtype), self.eps)


class ResBlock(nn.Module):
    """Pre-activation residual block conditioned on the noise level by scale and shift.

    ``h = conv1(silu(norm1(x)))``; ``scale, shift = proj(emb)``;
    ``out = skip(x) + conv2(silu(norm2(h) * (1 + scale) + shift))``.
    ``conv2`` starts at zero so every block starts as its skip path.

    Inference with one noise level shared by the batch (the samplers, under ``no_grad``) folds
    ``(1 + scale, shift)`` into the affine of ``norm2`` and applies SiLU in place: the same
    function with two fewer passes over the activations (about 1.3x faster on a CPU).
    """

    def __init__(self, c_in: int, c_out: int, emb_channels: int):
        super().__init__()
        self.norm1 = DtypeGroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_channels, 2 * c_out)
        self.norm2 = DtypeGroupNorm(_groups(c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if emb.shape[0] == 1 and not torch.is_grad_enabled():
            h = self.conv1(F.silu(self.norm1(x), inplace=True))
            scale, shift = self.emb(emb)[0].float().chunk(2)
            w = self.norm2.weight * (1 + scale)
            h = self.norm2.affine_norm(h, w, self.norm2.bias * (1 + scale) + shift)
            return self.skip(x) + self.conv2(F.silu(h, inplace=True))
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb).to(h.dtype)[:, :, None, None].chunk(2, dim=1)
        h = self.conv2(F.silu(self.norm2(h) * (1 + scale) + shift))
        return self.skip(x) + h


class UNet(nn.Module):
    """Residual UNet ``f(z, noise_var, context)``.

    Parameters
    ----------
    context_channels : int
        Number of conditioning channels (LR features + mask).
    widths : tuple of int
        Channels per level.
    blocks_per_level : int
        Residual blocks per level (encoder and decoder each).
    embedding_dim : int
        Size of the sinusoidal noise-level embedding.
    embedding_max_frequency : float
        Largest embedding frequency.
    out_channels : int
        Output channels (1).
    """

    def __init__(self, context_channels: int, widths=(32, 64, 96, 128), blocks_per_level: int = 2,
                 embedding_dim: int = 32, embedding_max_frequency: float = 1000.0, out_channels: int = 1):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        self.widths = widths
        self.context_channels = context_channels
        self.embedding_dim = embedding_dim
        self.embedding_max_frequency = embedding_max_frequency
        self.multiple = 2 ** (len(widths) - 1)
        emb_ch = 4 * widths[0]
        self.emb_mlp = nn.Sequential(nn.Linear(embedding_dim, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch))
        self.stem = nn.Conv2d(1 + context_channels, widths[0], 3, padding=1)

        self.down = nn.ModuleList()
        skips = [widths[0]]
        c = widths[0]
        for w in widths:
            blocks = nn.ModuleList()
            for _ in range(blocks_per_level):
                blocks.append(ResBlock(c, w, emb_ch))
                c = w
                skips.append(c)
            self.down.append(blocks)
        self.mid = nn.ModuleList([ResBlock(c, c, emb_ch) for _ in range(blocks_per_level)])
        self.up = nn.ModuleList()
        for w in reversed(widths):
            blocks = nn.ModuleList()
            for _ in range(blocks_per_level):
                blocks.append(ResBlock(c + skips.pop(), w, emb_ch))
                c = w
            self.up.append(blocks)
        # the stem skip joins the last decoder block through the head
        self.head_norm = DtypeGroupNorm(_groups(c + skips[-1]), c + skips[-1])
        self.head = nn.Conv2d(c + skips.pop(), out_channels, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, z: torch.Tensor, noise_var: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Predict the output channel.

        Parameters
        ----------
        z : Tensor, shape (B, 1, H, W)
            Noisy target (normalised units).
        noise_var : Tensor, shape (B,), or a scalar shared by the batch
            Noise variance ``sin(gamma)**2`` of each sample. A shared scalar is
            embedded once, which makes each sample's output independent of the
            batch size (used by the samplers).
        context : Tensor, shape (B, context_channels, H, W)
            Normalised conditioning channels (land cells 0).

        Returns
        -------
        Tensor, shape (B, out_channels, H, W), same memory format as the input.
        """
        B, _, H, W = z.shape
        noise_var = torch.as_tensor(noise_var, device=z.device, dtype=torch.float32).reshape(-1)
        # one shared level (a scalar) is embedded once and broadcast: the result then does not depend
        # on the batch size (matrix products are not batch-size invariant bit for bit)
        emb = self.emb_mlp(sinusoidal_embedding(noise_var, self.embedding_dim, self.embedding_max_frequency))
        x = torch.cat([z, context.to(z.dtype)], dim=1)
        ph, pw = (-H) % self.multiple, (-W) % self.multiple
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        h = self.stem(x)
        skips = [h]
        for level, blocks in enumerate(self.down):
            if level:
                h = F.avg_pool2d(h, 2)
            for block in blocks:
                h = block(h, emb)
                skips.append(h)
        for block in self.mid:
            h = block(h, emb)
        for level, blocks in enumerate(self.up):
            if level:
                h = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
            for block in blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), emb)
        h = torch.cat([h, skips.pop()], dim=1)
        out = self.head(F.silu(self.head_norm(h)))
        if ph or pw:
            out = out[:, :, :H, :W]
        return out


def build_network(cfg) -> UNet:
    """The UNet of a :class:`~sitsr_core.config.Config` (context: :func:`~sitsr_core.config.context_channels`)."""
    m = cfg.model
    return UNet(len(context_channels(cfg.data)), widths=m.widths, blocks_per_level=m.blocks_per_level,
                embedding_dim=m.embedding_dim, embedding_max_frequency=m.embedding_max_frequency)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
