"""Continuous-time offset-cosine diffusion: schedule, loss and the metres <-> normalised wrapper.

Schedule (Keras DDIM / "offset cosine"): ``t ~ U(0, 1)``,
``gamma(t) = gamma_min + t (gamma_max - gamma_min)`` with
``gamma_min = arccos(max_signal_rate)`` and ``gamma_max = arccos(min_signal_rate)``;
signal and noise rates ``r_s = cos(gamma)``, ``r_eps = sin(gamma)``;
``z_t = r_s y + r_eps eps``. The network is conditioned on the noise variance
``r_eps**2`` (see :mod:`sitsr_core.networks`).

Predictions (``diffusion.prediction``): ``eps`` (loss ``|eps - f|^2``) or ``v``
(``v = r_s eps - r_eps y``, loss ``|v - f|^2``); both are averaged over ocean
cells only. The ``regression`` objective trains the same network with MSE on
``y`` from ``z = 0`` at a fixed noise level (:data:`REGRESSION_NOISE_VAR`).

Target space (``data.target``): ``y = (sit - base - mean) / std`` relative to a base
field (:func:`sitsr_core.downscale.base_field`): ``anomaly``: base = ``sit_lr``; ``full``: base = 0;
``residual``: base = the prediction of a regression run (CorrDiff's "regression + diffusion on the
residual"). Statistics are the dataset's ``norm_stats`` (``anomaly``, ``sit``) or, for the
residual, those of the training days (``residual``, written to the run's ``norm_stats.json``).
Context channels are ``(f - mean_f) / std_f`` for each feature followed by the ocean mask;
land and NaN cells are 0 after normalisation. :class:`Denoiser` (EDM's "preconditioning"
wrapper) turns the network output into noise and clean-target predictions and holds these
statistics for the pure metres <-> normalised conversions; it knows nothing of base runs.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import torch
from torch import nn

from .config import context_channels
from .errors import SitsrConfigError

#: Noise variance fed to the network for the regression objective (input z = 0).
REGRESSION_NOISE_VAR = 0.0


def gamma_range(dcfg) -> tuple[float, float]:
    """``(gamma_min, gamma_max) = (arccos(max_signal_rate), arccos(min_signal_rate))`` of a DiffusionConfig."""
    return math.acos(dcfg.max_signal_rate), math.acos(dcfg.min_signal_rate)


def angles(t, dcfg):
    """Noise angle ``gamma(t)`` (tensor or array in, same type out)."""
    g0, g1 = gamma_range(dcfg)
    return g0 + t * (g1 - g0)


def rates(gamma):
    """``(signal_rate, noise_rate) = (cos gamma, sin gamma)``."""
    if isinstance(gamma, torch.Tensor):
        return torch.cos(gamma), torch.sin(gamma)
    return np.cos(gamma), np.sin(gamma)


def _bcast(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, 1, 1, 1)


def sample_t(n: int, generator: torch.Generator | None = None, device="cpu") -> torch.Tensor:
    """``n`` diffusion times drawn from U(0, 1) (on CPU with ``generator``, then moved)."""
    return torch.rand(n, generator=generator).to(device)


def diffuse(y: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
            dcfg) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``z_t = r_s y + r_eps eps``; returns ``(z_t, r_s, r_eps)`` with rates shaped (B, 1, 1, 1)."""
    s, n = rates(_bcast(angles(t.float(), dcfg)))
    return s * y + n * noise, s, n


def prediction_target(prediction: str, y, eps, s, n):
    """What the network learns to output for ``z = s y + n eps``: ``eps``, or ``v = s eps - n y``."""
    return eps if prediction == "eps" else s * eps - n * y


def split_prediction(prediction: str, z, out, s, n):
    """``(eps, y0)`` from the network output ``out`` at state ``z`` (the inverse of :func:`prediction_target`)."""
    if prediction == "eps":
        return out, (z - n * out) / s
    return n * z + s * out, s * z - n * out


def loss_terms(net: nn.Module, y: torch.Tensor, context: torch.Tensor, mask: torch.Tensor, cfg,
               t: torch.Tensor | None = None, noise: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample masked squared-error sums and ocean-cell counts.

    Parameters
    ----------
    net : module ``f(z, noise_var, context)``
    y, mask : Tensor, shape (B, 1, H, W)
        Normalised target (0 on land) and ocean mask (1 ocean, 0 land).
    context : Tensor, shape (B, C, H, W)
    cfg : Config
    t, noise : Tensor, optional
        Diffusion times (B,) and noise (B, 1, H, W); drawn from ``generator`` when omitted.

    Returns
    -------
    sums, counts : Tensor, shape (B,), float32
    """
    mask = mask.float()
    if cfg.train.objective == "regression":
        pred = net(torch.zeros_like(y), torch.full((y.shape[0],), REGRESSION_NOISE_VAR, device=y.device), context)
        target = y
    else:
        if t is None:
            t = sample_t(y.shape[0], generator, y.device)
        if noise is None:
            noise = torch.randn(y.shape, generator=generator).to(y.device)
        z, s, n = diffuse(y, t, noise, cfg.diffusion)
        pred = net(z, (n * n).reshape(-1), context)
        target = prediction_target(cfg.diffusion.prediction, y, noise, s, n)
    err = (pred.float() - target.float()) ** 2 * mask
    return err.sum(dim=(1, 2, 3)), mask.sum(dim=(1, 2, 3))


def loss(net: nn.Module, y: torch.Tensor, context: torch.Tensor, mask: torch.Tensor, cfg, **kw) -> torch.Tensor:
    """Mean squared error over the ocean cells of the batch (see :func:`loss_terms`)."""
    sums, counts = loss_terms(net, y, context, mask, cfg, **kw)
    return sums.sum() / counts.sum().clamp_min(1.0)


# ---------------------------------------------------------------- normalisation (numpy or torch)

def _nan_to_zero(a):
    if isinstance(a, torch.Tensor):
        return torch.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    return np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)


def _stack(arrays, axis):
    if isinstance(arrays[0], torch.Tensor):
        return torch.stack(arrays, dim=axis)
    return np.stack(arrays, axis=axis)


#: Key of each target's statistics in ``norm_stats``.
STATS_KEY = {"anomaly": "anomaly", "full": "sit", "residual": "residual"}


def target_stats(cfg, stats: Mapping) -> tuple[float, float]:
    """``(mean, std)`` of the target (:data:`STATS_KEY`)."""
    key = STATS_KEY[cfg.data.target]
    if key not in stats:
        raise SitsrConfigError(f"the normalisation statistics have no {key!r} entry (needed by data.target="
                               f"{cfg.data.target}; a residual run computes it when it starts training)")
    return float(stats[key]["mean"]), float(stats[key]["std"])


def normalise_context(fields: Mapping, mask, cfg, stats: Mapping, axis: int = -3):
    """Stack the normalised context channels along ``axis`` (land/NaN -> 0).

    The channels are :func:`~sitsr_core.config.context_channels`: the features, the base field
    (``fields["base"]``, in metres, normalised like ``sit``) when ``data.base_conditioning``, then
    the mask. ``fields[name]`` and ``mask`` share a shape (..., H, W); returns (..., C, H, W) for the
    default ``axis=-3``.
    """
    m = mask.float() if isinstance(mask, torch.Tensor) else np.asarray(mask, dtype=np.float32)
    chans = []
    for name in context_channels(cfg.data)[:-1]:
        key = "sit" if name == "base" else name
        f = (fields[name] - float(stats[key]["mean"])) / float(stats[key]["std"])
        chans.append(_nan_to_zero(f) * m)
    chans.append(m + 0 * chans[0])
    return _stack(chans, axis)


def normalise_target(sit, base, mask, cfg, stats: Mapping):
    """Physical thickness (m) -> normalised target ``y = (sit - base - mean) / std`` (land/NaN -> 0).

    ``base`` is :func:`sitsr_core.downscale.base_field` (same shape as ``sit``).
    """
    mean, std = target_stats(cfg, stats)
    m = mask.float() if isinstance(mask, torch.Tensor) else np.asarray(mask, dtype=np.float32)
    return _nan_to_zero((sit - base - mean) / std) * m


def to_metres(y, base, cfg, stats: Mapping):
    """Normalised target ``y`` -> thickness ``y std + mean + base`` in metres (before any post-processing)."""
    mean, std = target_stats(cfg, stats)
    return y * std + mean + _nan_to_zero(base)


class Denoiser(nn.Module):
    """The network wrapped with its schedule, prediction type and normalisation (EDM's preconditioning).

    ``predict(z, t, context) -> (eps_hat, y0_hat)`` works in normalised space for
    the samplers; :meth:`context`, :meth:`to_metres` and :meth:`target` convert
    between metres and that space using the dataset statistics stored with the run.
    The base field a target is relative to is computed outside
    (:func:`sitsr_core.downscale.base_field`).

    Parameters
    ----------
    net : UNet
    cfg : Config
    stats : dict
        ``norm_stats`` of the training dataset.
    bf16, channels_last : bool, optional
        Inference speed options (default: ``cfg.train``'s).
    compile : bool, optional
        Run the network through ``torch.compile`` (default: ``cfg.sample.compile``); the
        weights stay those of ``net``.
    """

    def __init__(self, net: nn.Module, cfg, stats: Mapping, bf16: bool | None = None,
                 channels_last: bool | None = None, compile: bool | None = None):
        super().__init__()
        self.net = net
        self.cfg = cfg
        self.stats = {k: dict(v) for k, v in stats.items()}
        self.bf16 = cfg.train.bf16 if bf16 is None else bf16
        self.channels_last = cfg.train.channels_last if channels_last is None else channels_last
        compile = cfg.sample.compile if compile is None else compile
        # kept outside the module tree: the compiled wrapper shares net's parameters
        self.__dict__["_forward"] = torch.compile(net) if compile else net

    @property
    def regression(self) -> bool:
        return self.cfg.train.objective == "regression"

    def context(self, fields: Mapping, mask):
        """Normalised context (see :func:`normalise_context`; ``fields`` holds ``base`` when conditioned on it)."""
        return normalise_context(fields, mask, self.cfg, self.stats)

    def target(self, sit, base, mask):
        """Thickness (m) -> normalised target, relative to ``base``."""
        return normalise_target(sit, base, mask, self.cfg, self.stats)

    def to_metres(self, y, base):
        """Normalised target -> thickness (m), relative to ``base``."""
        return to_metres(y, base, self.cfg, self.stats)

    def _net(self, z, noise_var, context):
        if self.channels_last:
            z = z.contiguous(memory_format=torch.channels_last)
            context = context.contiguous(memory_format=torch.channels_last)
        with torch.autocast(z.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self._forward(z, noise_var, context)
        return out.float().contiguous()

    @torch.no_grad()
    def predict(self, z: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted noise and clean target at times ``t`` (B,) for states ``z`` (B, 1, H, W)."""
        if self.regression:
            y0 = self._net(torch.zeros_like(z), torch.tensor(REGRESSION_NOISE_VAR, device=z.device), context)
            return torch.zeros_like(z), y0
        t = torch.as_tensor(t, dtype=torch.float32, device=z.device).reshape(-1)
        if t.numel() > 1 and bool((t == t[0]).all()):
            t = t[:1]  # one shared level: embedded once (batch-size invariant outputs)
        s, n = rates(_bcast(angles(t, self.cfg.diffusion)))
        out = self._net(z, (n * n).reshape(-1), context)
        return split_prediction(self.cfg.diffusion.prediction, z, out, s, n)
