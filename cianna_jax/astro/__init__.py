"""From FITS images to source catalogues: the astronomer's path through cianna_jax.

Needs the ``astro`` extra (astropy) for FITS, WCS and catalogue files, ``plot``
(matplotlib) for the validation figures; importing this package imports neither.

* :mod:`.fits_image` -- open a 2D image (SDC1 4D layout included) or cube, memory-mapped,
  with WCS, beam and units; :mod:`.noise` -- local background/rms maps;
* :mod:`.model_card` -- the JSON settings stored beside a network ``.dat``;
* :mod:`.predict` -- streamed tiled detection; :mod:`.measure` / :mod:`.gaussfit` -- source
  measurement; :mod:`.sky` -- pixel/sky conversions; :mod:`.pipeline` -- all of it;
* :mod:`.catalogue` -- tables, writing by extension, SDC1 and SDC2 text; :mod:`.crossmatch`,
  :mod:`.scores`, :mod:`.sdc1`, :mod:`.sdc2` -- matching and scores; :mod:`.validate` -- the
  ``val`` command; :mod:`.plots` -- figures; :mod:`.synthetic` -- synthetic FITS fields
  (:mod:`.synthetic_cube`, :mod:`.hi_discs`: HI cubes); :mod:`.kinematics` -- a line's
  receding half;
* training (``cianna-jax train``): :mod:`.labels` (a catalogue on an image, boxes, areas),
  :mod:`.sampler` (patches per epoch, background prefetch), :mod:`.architectures`,
  :mod:`.trainer`, :mod:`.train_validation`, :mod:`.checkpoint`, :mod:`.run_log`.
"""

from ._deps import MissingExtraError
from .catalogue import (
    SDC1_COLUMNS,
    CatalogueError,
    make_table,
    read_catalogue,
    read_sdc1,
    read_sdc2,
    to_sdc1,
    to_sdc2,
    write_catalogue,
    write_sdc1,
)
from .crossmatch import Match, crossmatch_pixels, crossmatch_sky, match_radius
from .fits_image import Beam, FitsImage, ImageError, open_image
from .labels import SourceLabels, read_training_catalogue, split_area, training_area
from .model_card import (
    LoadedModel,
    ModelCard,
    ModelError,
    Normalisation,
    load_model,
    load_model_card,
    save_model_card,
)
from .noise import NoiseMap, estimate_noise_map
from .pipeline import SourceFinding, find_sources, predict_file
from .predict import Detections, detect
from .scores import Scores, score_catalogue
from .sdc1 import Sdc1Score, sdc1_score
from .sdc2 import Sdc2Score, sdc2_score
from .trainer import TrainResult, TrainSettings, train_detector
from .validate import ValReport, validate

__all__ = [
    "MissingExtraError", "SDC1_COLUMNS", "CatalogueError", "make_table", "read_catalogue",
    "read_sdc1", "to_sdc1", "write_catalogue", "write_sdc1", "Match", "crossmatch_pixels",
    "crossmatch_sky", "match_radius", "Beam", "FitsImage", "ImageError", "open_image",
    "LoadedModel", "ModelCard", "ModelError", "Normalisation", "load_model", "load_model_card",
    "save_model_card", "NoiseMap", "estimate_noise_map", "SourceFinding", "find_sources",
    "predict_file", "Detections", "detect", "Scores", "score_catalogue", "Sdc1Score",
    "sdc1_score", "ValReport", "validate", "SourceLabels", "read_training_catalogue",
    "split_area", "training_area", "TrainResult", "TrainSettings", "train_detector",
    "read_sdc2", "to_sdc2", "Sdc2Score", "sdc2_score",
]
