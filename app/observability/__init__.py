"""What operators see: structured logs that carry the run id, and Prometheus metrics of the API
and the workers."""
