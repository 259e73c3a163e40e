"""webhook_core: replay captured webhook callbacks against waiting webhooks.

The rules live in docs/semantics.md; this package follows them exactly, once
one callback at a time (:class:`OnlineMatcher`) and once set-based in DuckDB
(:func:`replay`).
"""

from __future__ import annotations

from webhook_core.exceptions import (
    ConfigError,
    DatasetError,
    LocationError,
    MissingFileError,
    ReplayError,
    WebhookAuditError,
)
from webhook_core.extraction import BodyKind, Identifiers, extract_identifiers, parse_request, token_of
from webhook_core.loading import Dataset, FileReport, connect, load_dataset
from webhook_core.locations import Location, LocationKind, parse_location
from webhook_core.matching import (
    NOT_FOUND_BODY,
    LeadOutcome,
    LeadState,
    MatchedBy,
    MatchResult,
    OnlineMatcher,
    Outcome,
    WaitingWebhook,
)
from webhook_core.online import callbacks_from_table, matcher_from_tables
from webhook_core.replay import CALLBACK_COLUMNS, CALLBACK_ORDER, LEAD_COLUMNS, ReplayResult, replay
from webhook_core.requests import CapturedRequest
from webhook_core.settings import PairingRule, WebhookSettings, WebhookVersions, load_webhooks, parse_webhooks

__version__ = "0.1.0"

__all__ = [
    "CALLBACK_COLUMNS",
    "CALLBACK_ORDER",
    "LEAD_COLUMNS",
    "NOT_FOUND_BODY",
    "BodyKind",
    "CapturedRequest",
    "ConfigError",
    "Dataset",
    "DatasetError",
    "FileReport",
    "Identifiers",
    "LeadOutcome",
    "LeadState",
    "Location",
    "LocationError",
    "LocationKind",
    "MatchResult",
    "MatchedBy",
    "MissingFileError",
    "OnlineMatcher",
    "Outcome",
    "PairingRule",
    "ReplayError",
    "ReplayResult",
    "WaitingWebhook",
    "WebhookAuditError",
    "WebhookSettings",
    "WebhookVersions",
    "callbacks_from_table",
    "connect",
    "extract_identifiers",
    "load_dataset",
    "load_webhooks",
    "matcher_from_tables",
    "parse_location",
    "parse_request",
    "parse_webhooks",
    "replay",
    "token_of",
]
