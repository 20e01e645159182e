"""Which half of a cube detection recedes: the line's velocity gradient along its major axis.

A rotating disc shows its line at one end of the spectrum on one half of its major axis and
at the other end on the other half. Split the line's channels at its centre (the moment-0
maps ``M_hi`` of the channels above it and ``M_lo`` of those below) and its sky pixels at
its minor axis (``s = sign(u)``, ``u`` the distance along the fitted major axis, within
twice the fitted Gaussian's sigmas). Each half's sky imbalance ``f = sum s M / sum M`` is
the fraction of its flux on the ``+u`` side minus that on the ``-u`` side; their difference

    D = f_hi - f_lo

is positive when the ``+u`` half holds the line at higher channels, and zero for a source
whose sky shape does not change with the channel, however its centre or line centre are
misjudged (a product of the two imbalances would not be). Linearised, in noise of rms
``sigma`` per channel correlated as the beam ``K`` within a channel and independent
between channels, ``var f = sigma^2 n_channels sum_pq w_p w_q K(p - q) / (sum M)^2`` with
``w = s - f``, so ``D / sqrt(var f_hi + var f_lo)`` says whether the gradient is real.
Which end of the spectrum recedes (lower frequencies) is the catalogue's business
(:mod:`.pipeline`), from the cube's spectral axis.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .fit_errors import correlation_kernel
from .measure import Measurements, line_window
from .noise import NoiseMap

__all__ = ["GRADIENT_SNR", "velocity_gradient"]

#: a gradient this many sigmas from zero names the receding half (else the axis only)
GRADIENT_SNR = 3.0


def velocity_gradient(
    read: Callable[[tuple[slice, ...]], np.ndarray],
    shape: tuple[int, int, int],
    boxes: np.ndarray,
    noise: NoiseMap,
    m: Measurements,
    *,
    noise_beam: tuple[float, float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per line of ``m`` (measured by :func:`.measure.fit_moment0`, ``boxes [M, 6]`` its
    detections): ``theta_high`` [M], the direction (radians from +x towards +y) of the half
    of its major axis whose line sits at higher channels, and ``snr`` [M], the gradient's
    significance ``|D| / sigma_D`` (NaN where the line has no data or no major axis).
    ``noise_beam``: (sigma_major, sigma_minor, theta) of the noise's correlation in pixels
    (None: white noise). The channels are those of the line's flux
    (:func:`.measure.line_window`)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 6)
    M = b.shape[0]
    D, H, W = shape
    theta_high, snr = np.full(M, np.nan), np.full(M, np.nan)
    if M == 0:
        return theta_high, snr
    z0, z1 = line_window(m, b, D)
    rms = noise.at(m.y, m.x, m.z)
    for i in range(M):
        x, y, th = m.x[i], m.y[i], m.theta[i]
        sa, sb = m.sigma_major[i], m.sigma_minor[i]
        if not (np.isfinite([x, y, th, sa, sb, m.z[i], rms[i]]).all() and sa > 0 and sb > 0):
            continue
        r = int(np.ceil(2.0 * sa)) + 1
        ys = slice(max(int(round(y)) - r, 0), min(int(round(y)) + r + 1, H))
        xs = slice(max(int(round(x)) - r, 0), min(int(round(x)) + r + 1, W))
        if ys.stop <= ys.start or xs.stop <= xs.start:
            continue
        gy, gx = np.mgrid[ys, xs].astype(np.float64)
        u = (gx - x) * np.cos(th) + (gy - y) * np.sin(th)
        v = -(gx - x) * np.sin(th) + (gy - y) * np.cos(th)
        data = read((slice(z0[i], z1[i]), ys, xs)).astype(np.float64)
        inside = np.isfinite(data).all(axis=0) & ((u / sa) ** 2 + (v / sb) ** 2 <= 4.0)
        sign = np.where(inside, np.sign(u), 0.0)
        k = np.arange(z0[i], z1[i])
        halves = []
        for chans in (k > m.z[i], k < m.z[i]):
            mom0 = np.nan_to_num(data[chans]).sum(axis=0)
            flux = float(np.sum(mom0 * inside))
            if flux <= 0 or not chans.any():
                break
            f = float(np.sum(sign * mom0)) / flux
            w = np.where(inside, sign - f, 0.0)
            var = rms[i] ** 2 * np.count_nonzero(chans) * _correlated_sum(w, noise_beam)
            halves.append((f, var / flux**2))
        if len(halves) == 2 and halves[0][1] + halves[1][1] > 0:
            d = halves[0][0] - halves[1][0]
            snr[i] = abs(d) / np.sqrt(halves[0][1] + halves[1][1])
            theta_high[i] = th if d > 0 else th + np.pi
    return theta_high, snr


def _correlated_sum(w: np.ndarray, noise_beam: tuple[float, float, float] | None) -> float:
    """``sum_pq w_p w_q K(p - q)`` for weights ``w`` [h, w] and the beam's correlation."""
    if noise_beam is None:
        return float(np.sum(w * w))
    h, wd = w.shape
    k = correlation_kernel(max(h, wd), *noise_beam)
    c = max(h, wd) - 1
    kern = k[c - (h - 1):c + h, c - (wd - 1):c + wd]  # lags -(h-1)..h-1, -(wd-1)..wd-1
    shape = (2 * h - 1 + h - 1, 2 * wd - 1 + wd - 1)  # a full linear convolution
    conv = np.fft.irfft2(np.fft.rfft2(w, shape) * np.fft.rfft2(kern, shape), shape)
    return float(np.sum(w * conv[h - 1:2 * h - 1, wd - 1:2 * wd - 1]))
