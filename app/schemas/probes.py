from priorprobe_client.schemas.probes import Health, ProbeInfo, ProbeList

__all__ = ["Health", "ProbeInfo", "ProbeList"]
