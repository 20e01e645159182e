"""Pixel <-> sky conversions through a celestial WCS: positions, position angles, sizes.

Sky positions are equatorial (RA, Dec) in degrees: the image's own values when its WCS is
ICRS or FK5 J2000 (what radio images almost always are), converted to ICRS when it is
another frame astropy names (galactic, as Galactic-plane surveys are made; FK4 B1950; FK5
of another equinox), so a catalogue's ``ra``/``dec`` are always right ascension and
declination.  Position angles follow the astronomical convention: degrees from north
through east (counter-clockwise on the sky as usually displayed, east to the left), in
[0, 180).  Pixel angles are measured from +x towards +y, in radians.  Pixel coordinates are
0-based pixel centres (FITS pixel 1 is 0 here).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["beam_in_pixels", "pixel_to_sky", "sky_to_pixel", "foreign_frame", "frame_note",
           "angular_separation", "position_angle", "pixel_angle_to_pa", "pa_to_pixel_angle",
           "deconvolve", "convolve", "sky_offsets_per_pixel"]


def foreign_frame(wcs: Any) -> Any:
    """The astropy frame of ``wcs``'s sky axes when it is not equatorial J2000 (ICRS or
    FK5 J2000): galactic, FK4, FK5 of another equinox...; None otherwise, or when
    astropy cannot name the frame (the axes are then taken as RA and Dec)."""
    from astropy.coordinates import FK5, ICRS
    from astropy.wcs.utils import wcs_to_celestial_frame

    try:
        frame = wcs_to_celestial_frame(wcs)
    except (ValueError, TypeError):
        return None
    if isinstance(frame, ICRS):
        return None
    if type(frame) is FK5 and abs(frame.equinox.jyear - 2000.0) < 1e-9:
        return None
    return frame


def frame_note(wcs: Any) -> str:
    """What a catalogue's ``ra``/``dec`` are for an image with this WCS (its metadata)."""
    frame = foreign_frame(wcs)
    if frame is not None:
        return f"ICRS, converted from the image's {frame.name} WCS"
    system = str(getattr(wcs.wcs, "radesys", "") or "").strip().upper()
    return f"{system or 'ICRS'} (the image's WCS, equatorial J2000)"


def _native_to_icrs(frame: Any, lon: np.ndarray, lat: np.ndarray):
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    c = SkyCoord(lon * u.deg, lat * u.deg, frame=frame).icrs
    return np.asarray(c.ra.deg, np.float64), np.asarray(c.dec.deg, np.float64)


def pixel_to_sky(wcs: Any, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ra, dec) in degrees (ra in [0, 360)) of 0-based pixel positions (ICRS when the
    image's frame is not equatorial J2000, see the module docstring)."""
    lon, lat = wcs.pixel_to_world_values(np.asarray(x, np.float64), np.asarray(y, np.float64))
    lon, lat = np.asarray(lon, np.float64), np.asarray(lat, np.float64)
    frame = foreign_frame(wcs)
    if frame is not None and lon.size:
        lon, lat = _native_to_icrs(frame, lon, lat)
    return np.mod(lon, 360.0), lat


def sky_to_pixel(wcs: Any, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """0-based pixel positions (x, y) of sky positions (ra, dec) in degrees (ICRS, or the
    image's own equatorial J2000 frame)."""
    ra, dec = np.asarray(ra, np.float64), np.asarray(dec, np.float64)
    frame = foreign_frame(wcs)
    if frame is not None and ra.size:
        import astropy.units as u
        from astropy.coordinates import SkyCoord

        c = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs").transform_to(frame)
        sph = c.spherical
        ra, dec = np.asarray(sph.lon.deg, np.float64), np.asarray(sph.lat.deg, np.float64)
    x, y = wcs.world_to_pixel_values(ra, dec)
    return np.asarray(x, np.float64), np.asarray(y, np.float64)


def angular_separation(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle distance in degrees (Vincenty's formula, stable at all distances)."""
    l1, b1, l2, b2 = (np.radians(np.asarray(v, np.float64)) for v in (ra1, dec1, ra2, dec2))
    dl = l2 - l1
    s1, c1, s2, c2 = np.sin(b1), np.cos(b1), np.sin(b2), np.cos(b2)
    num1 = c2 * np.sin(dl)
    num2 = c1 * s2 - s1 * c2 * np.cos(dl)
    den = s1 * s2 + c1 * c2 * np.cos(dl)
    return np.degrees(np.arctan2(np.hypot(num1, num2), den))


def position_angle(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Position angle (deg, east of north, in [0, 360)) of point 2 seen from point 1."""
    l1, b1, l2, b2 = (np.radians(np.asarray(v, np.float64)) for v in (ra1, dec1, ra2, dec2))
    dl = l2 - l1
    pa = np.arctan2(np.sin(dl) * np.cos(b2),
                    np.cos(b1) * np.sin(b2) - np.sin(b1) * np.cos(b2) * np.cos(dl))
    return np.mod(np.degrees(pa), 360.0)


def sky_offsets_per_pixel(wcs: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The local WCS Jacobian ``[n, 2, 2]`` at 0-based pixels ``(x, y)``: arcsec east
    (row 0) and north (row 1) per pixel step in x (column 0) and y (column 1), in the RA/Dec
    frame of :func:`pixel_to_sky`; for carrying pixel errors onto the sky."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    _, dec0 = pixel_to_sky(wcs, x, y)
    out = np.empty(x.shape + (2, 2))
    for k, (sx, sy) in enumerate(((0.5, 0.0), (0.0, 0.5))):   # central differences
        ra1, dec1 = pixel_to_sky(wcs, x + sx, y + sy)
        ra2, dec2 = pixel_to_sky(wcs, x - sx, y - sy)
        dra = np.mod(ra1 - ra2 + 180.0, 360.0) - 180.0
        out[..., 0, k] = dra * np.cos(np.radians(dec0)) * 3600.0
        out[..., 1, k] = (dec1 - dec2) * 3600.0
    return out


def pixel_angle_to_pa(wcs: Any, x: np.ndarray, y: np.ndarray, theta: np.ndarray,
                      step: float = 1.0, *, directed: bool = False) -> np.ndarray:
    """Sky position angle (deg east of north, [0, 180): an axis) of a direction ``theta``
    (radians from +x towards +y) at pixel positions ``(x, y)``; ``directed``: in [0, 360),
    the direction itself (e.g. a galaxy's receding side)."""
    x, y, theta = (np.asarray(v, np.float64) for v in (x, y, theta))
    ra0, dec0 = pixel_to_sky(wcs, x, y)
    ra1, dec1 = pixel_to_sky(wcs, x + step * np.cos(theta), y + step * np.sin(theta))
    return np.mod(position_angle(ra0, dec0, ra1, dec1), 360.0 if directed else 180.0)


def pa_to_pixel_angle(wcs: Any, x: np.ndarray, y: np.ndarray, pa: np.ndarray, *,
                      image_frame: bool = False) -> np.ndarray:
    """Inverse of :func:`pixel_angle_to_pa`: pixel angle (radians, [0, pi)) of the sky
    position angle ``pa`` (deg east of north) at ``(x, y)``.  ``image_frame``: ``pa`` is
    measured from the north of the image's own sky frame, as a header's BPA is (galactic
    north for a galactic image), not from the ICRS north."""
    x, y, pa = (np.asarray(v, np.float64) for v in (x, y, pa))
    if image_frame:
        ra0, dec0 = (np.asarray(v, np.float64) for v in wcs.pixel_to_world_values(x, y))
    else:
        ra0, dec0 = pixel_to_sky(wcs, x, y)
    d = 1e-4  # degrees: a short step along the position angle
    p = np.radians(pa)
    dec1 = dec0 + d * np.cos(p)
    ra1 = ra0 + d * np.sin(p) / np.maximum(np.cos(np.radians(dec0)), 1e-12)
    if image_frame:
        x1, y1 = (np.asarray(v, np.float64) for v in wcs.world_to_pixel_values(ra1, dec1))
    else:
        x1, y1 = sky_to_pixel(wcs, ra1, dec1)
    return np.mod(np.arctan2(y1 - y, x1 - x), np.pi)


def _covariance(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``[..., 2, 2]`` covariance of Gaussians of sigmas ``a`` (major), ``b`` and angle ``t``."""
    c, s = np.cos(t), np.sin(t)
    return np.stack([np.stack([a * a * c * c + b * b * s * s, (a * a - b * b) * c * s], -1),
                     np.stack([(a * a - b * b) * c * s, a * a * s * s + b * b * c * c], -1)], -2)


def _gaussian_with_beam(smaj, smin, theta, beam_smaj, beam_smin, beam_theta, sign: float):
    """The Gaussian whose covariance is the given one's plus ``sign`` times the beam's, as
    (sigma major, sigma minor, angle in [0, pi)); a negative variance becomes 0."""
    smaj, smin, theta = (np.asarray(v, np.float64) for v in (smaj, smin, theta))
    d = _covariance(smaj, smin, theta) + sign * _covariance(
        np.float64(beam_smaj), np.float64(beam_smin), np.asarray(beam_theta, np.float64))
    ev, vec = np.linalg.eigh(d)
    ev = np.maximum(ev, 0.0)
    ang = np.mod(np.arctan2(vec[..., 1, 1], vec[..., 0, 1]), np.pi)
    return np.sqrt(ev[..., 1]), np.sqrt(ev[..., 0]), ang


def deconvolve(smaj: np.ndarray, smin: np.ndarray, theta: np.ndarray, beam_smaj: float,
               beam_smin: float, beam_theta: float | np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                      np.ndarray]:
    """Intrinsic Gaussian (sigma major, sigma minor, angle) of a fitted Gaussian with the beam
    removed (covariance subtraction, same units and angle frame for both); an axis narrower
    than the beam gets 0."""
    return _gaussian_with_beam(smaj, smin, theta, beam_smaj, beam_smin, beam_theta, -1.0)


def convolve(smaj: np.ndarray, smin: np.ndarray, theta: np.ndarray, beam_smaj: float,
             beam_smin: float, beam_theta: float | np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                    np.ndarray]:
    """The observed Gaussian (sigma major, sigma minor, angle) of an intrinsic one seen
    through the beam (covariance addition): :func:`deconvolve` undone."""
    return _gaussian_with_beam(smaj, smin, theta, beam_smaj, beam_smin, beam_theta, 1.0)


def beam_in_pixels(image: Any) -> tuple[float, float, float] | None:
    """A :class:`.fits_image.FitsImage`'s beam as (sigma_major, sigma_minor) in pixels and the major axis's angle
    in radians from +x towards +y (at the image's centre), or None without a beam or a
    pixel scale."""
    fwhm = image.beam_fwhm_pixels()
    if fwhm is None:
        return None
    H, W = image.shape[-2:]
    bth = float(pa_to_pixel_angle(image.wcs, np.array([W / 2]), np.array([H / 2]),
                                  np.array([image.beam.bpa]), image_frame=True)[0]
                ) if image.wcs is not None else 0.0
    fwhm_per_sigma = 2.0 * np.sqrt(2.0 * np.log(2.0))
    return fwhm[0] / fwhm_per_sigma, fwhm[1] / fwhm_per_sigma, bth
