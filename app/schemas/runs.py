from priorprobe_client.schemas.runs import RunList, RunRead, RunStatus, RunSummary

__all__ = ["RunList", "RunRead", "RunStatus", "RunSummary"]
