from priorprobe_client.schemas.datasets import DatasetCreated, DatasetList, DatasetRead

__all__ = ["DatasetCreated", "DatasetList", "DatasetRead"]
