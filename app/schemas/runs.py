from priorprobe_client.schemas.runs import RunList, RunRead, RunStatus

__all__ = ["RunList", "RunRead", "RunStatus"]
