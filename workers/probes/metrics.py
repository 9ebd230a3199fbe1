"""Metrics: the typed numbers of a probe's result that tables, CI gates, baselines and trends use.

The definitions live in the light client's package (``priorprobe_client.schemas.metrics``), the one
source the server and CI clients share without torch; probes import them from here.
"""

from priorprobe_client.schemas.metrics import Better, Metric, MetricDefinition, Scope, definition_for

__all__ = ["Better", "Metric", "MetricDefinition", "Scope", "definition_for"]
