from priorprobe_client.schemas.models import LATEST_PREFIX, ModelCreated, ModelList, ModelRead

__all__ = ["LATEST_PREFIX", "ModelCreated", "ModelList", "ModelRead"]
