"""A small library a Python model server imports to export what Kanaria's analysis needs.

Metrics (all labelled ``model`` and ``revision``; the names are a contract with the
operator's query templates):

- ``kanaria_model_requests_total`` / ``kanaria_model_errors_total`` (5xx) counters
- ``kanaria_model_request_duration_seconds`` histogram (:data:`LATENCY_BUCKETS`)
- ``kanaria_model_feature{feature}`` histogram per input feature on the reference profile's
  fixed bins (training deciles + ``+Inf``)
- ``kanaria_model_prediction`` histogram of the score, the probability the model gives the
  class it predicts (its highest), on the profile's score bins, and
  ``kanaria_model_predictions_total{class}``. ``_sum / _count`` over a window is the mean
  confidence: for calibrated predictions the expected accuracy, an estimate before any label
  arrives (only while the inputs look like the training data: under a covariate shift the
  model can be confidently wrong, and the accuracy falls well below the mean confidence)
- ``kanaria_model_labels_total{outcome="correct"|"incorrect"}`` from delayed ground truth,
  credited to the revision that served the prediction, counted when the label arrives
- ``kanaria_model_matured_total{horizon, outcome="correct"|"incorrect"|"unlabelled"}``: each
  prediction with a request id, counted once per maturity horizon H (``horizon`` in whole
  seconds, e.g. ``"300"``) when its age reaches H, with its label's outcome if the label
  arrived within H, else unlabelled: any window of it is the cohort of predictions served H
  earlier
- ``kanaria_model_label_delay_seconds{outcome}`` histogram (:data:`LABEL_DELAY_BUCKETS`) of
  the time from a prediction to its label, to choose H from
- ``kanaria_model_pending_predictions`` gauge: predictions not yet matured at every horizon
- ``kanaria_model_agreement_total{outcome="agree"|"disagree"}``: for a label that carries the
  prediction served to the user, whether this revision predicted the same (a shadow's
  agreement with the stable revision; trivially "agree" on the serving revision)
- ``kanaria_model_feedback_dropped_total{reason="expired"|"evicted"|"replaced"|"shutdown"|"unknown"}``
- user feedback on the answers, with ``feedback_signals`` / ``rating_scales`` (or
  :class:`UserFeedback` alone, for a server without a reference profile such as an LLM
  server): ``kanaria_model_feedback_total{signal, outcome}``,
  ``kanaria_model_feedback_matured_total{signal, horizon, outcome="positive"|"negative"|"none"}``
  and, for ratings, ``kanaria_model_feedback_ratings_matured_total{signal, horizon, outcome}``,
  ``kanaria_model_feedback_rating_sum_matured_total`` and
  ``kanaria_model_feedback_rating_squares_matured_total`` (see :mod:`kanaria.monitor.feedback`)
- ``kanaria_model_info{version}`` = 1
- the reference the revision was trained and validated on, from its profile (gauges, each
  only when the profile has it; see :class:`ReferenceProfile`):
  ``kanaria_model_reference_feature{feature, le}`` the number of reference rows whose feature
  value is at most ``le``, cumulative like a histogram's buckets, on the same ``le`` strings
  as ``kanaria_model_feature_bucket`` (``"+Inf"`` included);
  ``kanaria_model_reference_prediction{le}`` the same for the model's scores on those rows;
  ``kanaria_model_reference_accuracy`` the offline accuracy on held-out rows and
  ``kanaria_model_reference_accuracy_samples`` how many rows it was measured on
"""

from __future__ import annotations

from kanaria.monitor.feedback import UserFeedback
from kanaria.monitor.histogram import FixedBinCollector, FixedBinHistogram
from kanaria.monitor.monitor import (
    DEFAULT_MATURITY_HORIZONS,
    LABEL_DELAY_BUCKETS,
    LATENCY_BUCKETS,
    MATURITY_HORIZONS_ENV,
    ModelMonitor,
    horizons_from_env,
    parse_horizons,
)
from kanaria.monitor.pending import DropReason, Outcome, PendingPrediction, PendingStore
from kanaria.monitor.profile import ReferenceProfile, bin_counts, decile_edges

__all__ = [
    "DEFAULT_MATURITY_HORIZONS",
    "LABEL_DELAY_BUCKETS",
    "LATENCY_BUCKETS",
    "MATURITY_HORIZONS_ENV",
    "DropReason",
    "FixedBinCollector",
    "FixedBinHistogram",
    "ModelMonitor",
    "Outcome",
    "PendingPrediction",
    "PendingStore",
    "ReferenceProfile",
    "UserFeedback",
    "bin_counts",
    "decile_edges",
    "horizons_from_env",
    "parse_horizons",
]
