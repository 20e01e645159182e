"""The reliability test made apart around bright sources, where artefacts are.

The residual sidelobes of calibration errors around bright sources (spokes and rings, of
either sign) are the main source of false sources in real radio images, and they crowd a
small part of the sky. The inverted-image test (:mod:`.reliability`) sees them: the
inverted image turns their negative half into "sources" at the same places. Counted over
the whole image, they drag every source's estimate down; counted apart, each zone gets its
own: the catalogue's sources flagged ``near_bright`` (:mod:`.flags`) against the inverted
image's detections in the same places (near the catalogue's bright sources), the others
against the rest. :func:`bright_zones` splits both catalogues; :func:`zone_thresholds`
chooses an objectness threshold per zone for a target reliability (the zone near bright
sources raised until its detections reach the target too, the rest of the image kept at its
own); :func:`box_thresholds` gives each detector box its zone's threshold.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .flags import BrightRule, near_bright
from .reliability import ThresholdScan, choose_threshold

__all__ = ["bright_zones", "ZoneThresholds", "zone_thresholds", "box_thresholds",
           "format_zones", "ZONES_NOTE"]

ZONES_NOTE = ("each source's reliability is its zone's: near_bright (flags) or elsewhere, "
              "each zone's detections against the inverted image's in the same zone")


def bright_zones(table: Any, inverted: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(the catalogue's ``near_bright`` flags, the inverted image's detections near the
    catalogue's bright sources by the same rule) when the catalogue has sources near bright
    ones and its beam and pixel scale are known (its metadata, with the rule it was flagged
    by: ``near_bright_rule``); else None."""
    if "near_bright" not in table.colnames or not np.any(np.asarray(table["near_bright"])):
        return None
    try:
        fwhm = float(table.meta["beam_bmaj_arcsec"]) / float(table.meta["pixel_scale_arcsec"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    if not (np.isfinite(fwhm) and fwhm > 0):
        return None
    rule = BrightRule.of(table.meta)
    b = np.flatnonzero(np.asarray(table["snr"], np.float64) >= rule.snr)
    x, y, p = (np.asarray(table[c], np.float64) for c in ("x", "y", "peak"))
    near_inv = near_bright(np.asarray(inverted["x"]), np.asarray(inverted["y"]),
                           np.asarray(inverted["peak"]), x[b], y[b], p[b],
                           rule.radius * fwhm, rule.ratio)
    return np.asarray(table["near_bright"], bool), near_inv


@dataclass(frozen=True)
class ZoneThresholds:
    """The thresholds chosen for a target reliability: ``threshold`` (and its ``scan``)
    for the whole image, or for the sources away from bright ones when ``near`` (the scan
    and threshold of those near them) is given."""

    scan: ThresholdScan
    threshold: float
    near: tuple[ThresholdScan, float] | None = None

    def summary(self) -> dict[str, Any]:
        """For the catalogue's metadata (the near zone's threshold and scan)."""
        if self.near is None:
            return {}
        scan, thr = self.near
        return {"near_bright_threshold": thr,
                "near_bright_scan": {"thresholds": scan.thresholds.tolist(),
                                     "n_image": scan.n_image.tolist(),
                                     "n_inverted": scan.n_inverted.tolist()}}


def zone_thresholds(table: Any, inverted: Any, floor: float, target: float
                    ) -> ZoneThresholds:
    """Thresholds for a ``target`` reliability from the detections of the image (``table``,
    measured down to ``floor``) and of the inverted image: one per zone when the catalogue
    has sources near bright ones (:func:`bright_zones`), else one for the whole image."""
    obj = np.asarray(table["objectness"], np.float64)
    obj_inv = np.asarray(inverted["objectness"], np.float64)
    zones = bright_zones(table, inverted)
    if zones is None:
        return ZoneThresholds(*choose_threshold(obj, obj_inv, floor, target))
    near, near_inv = zones
    scan, thr = choose_threshold(obj[~near], obj_inv[~near_inv], floor, target)
    with warnings.catch_warnings(record=True) as said:  # (said again, naming the zone)
        warnings.simplefilter("always")
        near_choice = choose_threshold(obj[near], obj_inv[near_inv], floor, target)
    for w in said:
        warnings.warn(f"the sources near bright ones: {w.message}", w.category, stacklevel=2)
    return ZoneThresholds(scan, thr, near_choice)


def box_thresholds(boxes: Any, table: Any, chosen: ZoneThresholds) -> np.ndarray:
    """Each detector box's threshold (``boxes``: :class:`~cianna_jax.yolo.decode.
    DecodedBoxes` in image pixels, pixel ``i`` spanning ``[i, i + 1)``): its zone's, the
    zone of the measured source (a row of ``table``, measured from the same boxes) nearest
    its centre."""
    n = len(boxes.objectness)
    if chosen.near is None or not n or not len(table):
        return np.full(n, chosen.threshold)
    cx = 0.5 * (boxes.boxes[:, 0] + boxes.boxes[:, 3]) - 0.5
    cy = 0.5 * (boxes.boxes[:, 1] + boxes.boxes[:, 4]) - 0.5
    x, y = np.asarray(table["x"], np.float64), np.asarray(table["y"], np.float64)
    near = np.asarray(table["near_bright"], bool)
    zone = np.zeros(n, bool)
    for k0 in range(0, n, 2048):
        sl = slice(k0, k0 + 2048)
        d = (cx[sl, None] - x) ** 2 + (cy[sl, None] - y) ** 2
        zone[sl] = near[np.nanargmin(np.where(np.isfinite(d), d, np.inf), axis=1)]
    return np.where(zone, chosen.near[1], chosen.threshold)


def format_zones(table: Any) -> str:
    """A report line of a catalogue's reliability zones (its metadata), '' without them:
    each zone's detections and the inverted image's there, and the zone's threshold."""
    z = table.meta.get("reliability_zones")
    if not z:
        return ""
    near, far = z.get("near_bright", {}), z.get("elsewhere", {})
    thr = table.meta.get("reliability", {}).get("near_bright_threshold")
    return (f"reliability by zone: near bright sources {sum(near.get('n_image', []))} "
            f"detections, {sum(near.get('n_inverted', []))} on the inverted image there"
            + (f" (objectness threshold {thr:g})" if thr is not None else "")
            + f"; elsewhere {sum(far.get('n_image', []))} and "
            f"{sum(far.get('n_inverted', []))}\n")
