from priorprobe_client.schemas.keys import ApiKeyCreate, ApiKeyCreated, ApiKeyList, ApiKeyRead, KeyScope

__all__ = ["ApiKeyCreate", "ApiKeyCreated", "ApiKeyList", "ApiKeyRead", "KeyScope"]
