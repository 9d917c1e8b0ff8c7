"""A small library a Python model server imports to export what Kanaria's analysis needs.

Metrics (all labelled ``model`` and ``revision``; the names are a contract with the
operator's query templates):

- ``kanaria_model_requests_total`` / ``kanaria_model_errors_total`` (5xx) counters
- ``kanaria_model_request_duration_seconds`` histogram (:data:`LATENCY_BUCKETS`)
- ``kanaria_model_feature{feature}`` histogram per input feature on the reference profile's
  fixed bins (training deciles + ``+Inf``)
- ``kanaria_model_prediction`` histogram of the predicted class's probability, on the
  profile's score bins, and ``kanaria_model_predictions_total{class}``
- ``kanaria_model_labels_total{outcome="correct"|"incorrect"}`` from delayed ground truth,
  credited to the revision that served the prediction
- ``kanaria_model_agreement_total{outcome="agree"|"disagree"}``: for a label that carries the
  prediction served to the user, whether this revision predicted the same (a shadow's
  agreement with the stable revision; trivially "agree" on the serving revision)
- ``kanaria_model_feedback_dropped_total{reason="expired"|"evicted"|"unknown"}``
- ``kanaria_model_info{version}`` = 1
"""

from __future__ import annotations

from kanaria.monitor.histogram import FixedBinCollector, FixedBinHistogram
from kanaria.monitor.monitor import LATENCY_BUCKETS, ModelMonitor
from kanaria.monitor.pending import DropReason, PendingPrediction, PendingStore
from kanaria.monitor.profile import ReferenceProfile, decile_edges

__all__ = [
    "LATENCY_BUCKETS",
    "DropReason",
    "FixedBinCollector",
    "FixedBinHistogram",
    "ModelMonitor",
    "PendingPrediction",
    "PendingStore",
    "ReferenceProfile",
    "decile_edges",
]
