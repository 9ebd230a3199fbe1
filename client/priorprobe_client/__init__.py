"""PriorProbe's light client: the API's models, a typed client, and ``submit`` for CI gates.

Importable without torch; the server imports its request/response models from ``schemas``.
"""

from priorprobe_client.client import AsyncPriorProbeClient, PriorProbeClient
from priorprobe_client.errors import ApiError, ServerUnreachable

__all__ = ["ApiError", "AsyncPriorProbeClient", "PriorProbeClient", "ServerUnreachable"]
