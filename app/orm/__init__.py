"""SQLAlchemy 2 typed ORM: one module per table; import from here."""

from app.orm.api_key import ApiKey
from app.orm.base import Base
from app.orm.dataset_record import DatasetRecord
from app.orm.model_record import ModelRecord
from app.orm.report import Report
from app.orm.run import Run, RunStatus
from app.orm.run_metric import RunMetric
from app.orm.run_shard import RunShard
from app.orm.webhook import Webhook, WebhookAttempt, WebhookDelivery

__all__ = ["ApiKey", "Base", "DatasetRecord", "ModelRecord", "Report", "Run", "RunMetric", "RunShard", "RunStatus", "Webhook", "WebhookAttempt", "WebhookDelivery"]
