from priorprobe_client.schemas.metric_lists import MetricTrend, RunMetricList, TrendPoint

__all__ = ["MetricTrend", "RunMetricList", "TrendPoint"]
