"""Orchestrate: scheduled, budgeted coding-agent cycles. The domain package (no Celery imports)."""

__version__ = "0.1.0"
