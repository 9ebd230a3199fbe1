from priorprobe_client.schemas.webhooks import (
    WebhookAttemptRead,
    WebhookCreate,
    WebhookDeliveryList,
    WebhookDeliveryRead,
    WebhookEvent,
    WebhookList,
    WebhookPayload,
    WebhookRead,
)

__all__ = ["WebhookAttemptRead", "WebhookCreate", "WebhookDeliveryList", "WebhookDeliveryRead", "WebhookEvent",
           "WebhookList", "WebhookPayload", "WebhookRead"]  # fmt: skip
