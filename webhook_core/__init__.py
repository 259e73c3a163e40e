"""webhook_core: replay captured webhook callbacks against waiting webhooks.

The rules live in docs/semantics.md; this package follows them exactly, once
one callback at a time (:class:`OnlineMatcher`) and once set-based in DuckDB
(:func:`replay`). The layers and where each thing lives: docs/architecture.md.
This module re-exports the public API: loading, the replay, the online matcher
and the analysis functions (rates, the per-lead headline, survival, timeouts, pairing, timeline, period
comparison, evidence for advertisers).
"""

from __future__ import annotations

from webhook_core.analysis.compare import compare, compare_split
from webhook_core.analysis.evidence import EVIDENCE_COLUMNS, evidence, evidence_summary
from webhook_core.analysis.pairing import discover_locations, near_misses, pairing_validation
from webhook_core.analysis.rates import disagreements, lead_headline, rates
from webhook_core.analysis.survival import CURVE_COLUMNS, capture_curve, finishing_curve, wait_summary
from webhook_core.analysis.timeline import lead_timeline
from webhook_core.analysis.timeouts import (
    ADVICE_COLUMNS,
    DEFAULT_CANDIDATES,
    blocking_webhooks,
    timeout_advice,
    timeout_whatifs,
)
from webhook_core.audit.audit import Audit, open_audit
from webhook_core.audit.database import write_audit_database
from webhook_core.audit.filters import Filters, apply_filters
from webhook_core.audit.online import callbacks_from_table, matcher_from_tables
from webhook_core.audit.replay import CALLBACK_COLUMNS, CALLBACK_ORDER, LEAD_COLUMNS, ReplayResult, replay
from webhook_core.domain import NOT_FOUND_BODY, OK_BODY, REASONS_404, LeadState, MatchedBy, Outcome
from webhook_core.exceptions import (
    AuditDatabaseError,
    AuditDatabaseLockedError,
    CaptureLogError,
    ConfigError,
    DatasetError,
    LocationError,
    MissingFileError,
    ReceiverError,
    ReplayError,
    ReplayHttpError,
    ReportError,
    SparkEngineError,
    WebhookAuditError,
)
from webhook_core.load.dataset import Dataset, FileReport, connect, load_dataset
from webhook_core.rules.extraction import BodyKind, Identifiers, extract_identifiers, parse_request, token_of
from webhook_core.rules.locations import Location, LocationKind, parse_location
from webhook_core.rules.matching import LeadOutcome, MatchResult, OnlineMatcher, WaitingWebhook
from webhook_core.rules.requests import CapturedRequest
from webhook_core.rules.settings import PairingRule, WebhookSettings, WebhookVersions, load_webhooks, parse_webhooks

__version__ = "0.1.0"

__all__ = [
    "ADVICE_COLUMNS",
    "CALLBACK_COLUMNS",
    "CALLBACK_ORDER",
    "CURVE_COLUMNS",
    "DEFAULT_CANDIDATES",
    "EVIDENCE_COLUMNS",
    "LEAD_COLUMNS",
    "NOT_FOUND_BODY",
    "OK_BODY",
    "REASONS_404",
    "Audit",
    "AuditDatabaseError",
    "AuditDatabaseLockedError",
    "BodyKind",
    "CaptureLogError",
    "CapturedRequest",
    "ConfigError",
    "Dataset",
    "DatasetError",
    "FileReport",
    "Filters",
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
    "ReceiverError",
    "ReplayError",
    "ReplayHttpError",
    "ReplayResult",
    "ReportError",
    "SparkEngineError",
    "WaitingWebhook",
    "WebhookAuditError",
    "WebhookSettings",
    "WebhookVersions",
    "apply_filters",
    "blocking_webhooks",
    "callbacks_from_table",
    "capture_curve",
    "compare",
    "compare_split",
    "connect",
    "disagreements",
    "discover_locations",
    "evidence",
    "evidence_summary",
    "extract_identifiers",
    "finishing_curve",
    "lead_headline",
    "lead_timeline",
    "load_dataset",
    "load_webhooks",
    "matcher_from_tables",
    "near_misses",
    "open_audit",
    "pairing_validation",
    "parse_location",
    "parse_request",
    "parse_webhooks",
    "rates",
    "replay",
    "timeout_advice",
    "timeout_whatifs",
    "token_of",
    "wait_summary",
    "write_audit_database",
]
