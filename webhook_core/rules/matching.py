"""The online matcher: production's rules, one callback at a time.

It is what the HTTP receiver runs and the oracle the SQL replay is tested
against. The rules are numbered as in docs/semantics.md ("Matching").
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from webhook_core.domain import LeadState, MatchedBy, Outcome
from webhook_core.rules.extraction import Identifiers, extract_identifiers, parse_request
from webhook_core.rules.requests import CapturedRequest
from webhook_core.rules.settings import WebhookVersions
from webhook_core.timeutil import from_us, to_us

__all__ = [
    "LeadOutcome",
    "MatchResult",
    "OnlineMatcher",
    "WaitingWebhook",
]

@dataclass(frozen=True, slots=True)
class WaitingWebhook:
    """One dispatch: a lead sent to a webhook's advertiser, waiting for its callback.

    ``row`` is its position in the dispatches input, the tie-break between leads
    created at the same instant.
    """

    lead_id: str
    conversion_id: str
    advertiser_id: str
    external_id: str | None
    webhook_id: str
    created_at: datetime
    row: int = 0

    def __post_init__(self) -> None:
        if self.created_at.tzinfo is None:
            raise ValueError("created_at must be timezone-aware")


@dataclass(frozen=True, slots=True)
class MatchResult:
    request: CapturedRequest
    outcome: Outcome
    webhook_id: str | None  # the token, when a webhook version is live for it
    identifiers: Identifiers | None
    matched_by: MatchedBy | None = None
    lead: WaitingWebhook | None = None  # resolved lead, or the other webhook's lead for wrong_webhook

    @property
    def status_code(self) -> int:
        status = self.outcome.status_code
        if status is None:  # refused: the status it was answered (a refused request always has one)
            status = self.request.recorded_status
        if status is None:
            raise ValueError("a refused request needs recorded_status")
        return status

    @property
    def wait_s(self) -> float | None:
        """Seconds from the resolved lead's creation to this callback (negative when early)."""
        if self.lead is None or self.outcome is Outcome.WRONG_WEBHOOK:
            return None
        return (to_us(self.request.received_at) - to_us(self.lead.created_at)) / 1e6


@dataclass(frozen=True, slots=True)
class LeadOutcome:
    lead: WaitingWebhook
    state: LeadState
    finished_at: datetime | None
    wait_s: float | None
    callbacks: int
    first_callback_s: float | None
    deadline: datetime | None


@dataclass(slots=True)
class _Lead:
    waiting: WaitingWebhook
    created_us: int
    deadline_us: int | None
    finished_us: int | None = None
    finished_at: datetime | None = None
    callbacks: list[int] = field(default_factory=list)  # received_at (µs) of resolved callbacks
    last_key: tuple[int, int] | None = None  # (received_at µs, seq) of the latest callback; per-lead order only


class OnlineMatcher:
    """Stateful matcher. Feed callbacks in ``(received_at, input order)`` order.

    ``per_lead_order=True`` relaxes that to: the callbacks *resolved to one lead*
    come in ``(received_at, seq)`` order; callbacks to different leads may
    interleave in any order (the HTTP receiver's replay clock needs this, since a
    replayer sends different leads concurrently). Outcomes are the same as in the
    global order, because ``match`` reads only static inputs (settings, the
    callback, the registered leads) and the resolved lead's own state (whether its
    wait has finished), which only callbacks resolved to that lead write. Leads
    must be registered before the callbacks that should see them, as in global
    order. A callback out of order for its lead raises ``ValueError`` before its
    lead's state changes.
    """

    def __init__(self, webhooks: WebhookVersions, *, per_lead_order: bool = False) -> None:
        self.webhooks = webhooks
        self.per_lead_order = per_lead_order
        self._by_conversion: dict[str, _Lead] = {}
        self._by_external: dict[tuple[str, str, str], list[tuple[int, int, _Lead]]] = {}
        self._leads: list[_Lead] = []
        self._latest_us: int | None = None
        self._last_key: tuple[int, int] | None = None

    def register(self, waiting: WaitingWebhook) -> None:
        """Add a waiting webhook. Its deadline uses the webhook version live at ``created_at``."""
        if waiting.conversion_id in self._by_conversion:
            raise ValueError(f"conversion_id {waiting.conversion_id!r} is already registered")
        version = self.webhooks.live(waiting.webhook_id, waiting.created_at)
        if version is None:
            raise ValueError(f"webhook {waiting.webhook_id!r} is not live at {waiting.created_at.isoformat()}")
        created_us = to_us(waiting.created_at)
        timeout_us = version.timeout_us if version.wait else None
        lead = _Lead(waiting, created_us, None if timeout_us is None else created_us + timeout_us)
        self._leads.append(lead)
        self._by_conversion[waiting.conversion_id] = lead
        if waiting.external_id:
            key = (waiting.webhook_id, waiting.advertiser_id, waiting.external_id)
            bisect.insort(self._by_external.setdefault(key, []), (created_us, waiting.row, lead),
                          key=lambda item: (item[0], item[1]))
        self._see(created_us)

    def register_all(self, waiting: Iterable[WaitingWebhook]) -> None:
        for item in waiting:
            self.register(item)

    def waiting(self, conversion_id: str) -> WaitingWebhook | None:
        """The waiting webhook registered under ``conversion_id``, if any."""
        lead = self._by_conversion.get(conversion_id)
        return None if lead is None else lead.waiting

    def match(self, request: CapturedRequest) -> MatchResult:
        received_us = to_us(request.received_at)
        key = (received_us, request.seq)
        if not self.per_lead_order:
            if self._last_key is not None and key < self._last_key:
                raise ValueError("callbacks must be fed in (received_at, seq) order")
            self._last_key = key
        self._see(received_us)
        if request.refused:  # answered without judging at capture: nothing to judge, no state to change
            return MatchResult(request, Outcome.REFUSED, None, None)

        parsed = parse_request(request)
        version = None if parsed.token is None else self.webhooks.live(parsed.token, request.received_at)
        if version is None:  # rule 1
            return MatchResult(request, Outcome.UNKNOWN_TOKEN, None, None)
        ids = extract_identifiers(parsed, version)
        webhook_id = version.webhook_id
        if ids.conversion_id is None and ids.external_id is None:  # rule 2
            return MatchResult(request, Outcome.NO_IDENTIFIERS, webhook_id, ids)

        lead, matched_by = self._resolve(webhook_id, ids, received_us)  # rule 3
        if lead is not None and self.per_lead_order:
            if lead.last_key is not None and key < lead.last_key:
                raise ValueError(f"callbacks to lead {lead.waiting.lead_id!r} must be fed in (received_at, seq) "
                                 "order")
            lead.last_key = key
        if lead is None:  # rule 4
            other = self._by_conversion.get(ids.conversion_id) if ids.conversion_id else None
            if other is not None:
                return MatchResult(request, Outcome.WRONG_WEBHOOK, webhook_id, ids, lead=other.waiting)
            return MatchResult(request, Outcome.NOT_FOUND, webhook_id, ids)

        outcome = self._judge(lead, ids, version.interim_statuses, received_us)  # rule 5
        lead.callbacks.append(received_us)
        if outcome is Outcome.MATCHED:
            lead.finished_us = received_us
            lead.finished_at = request.received_at
        return MatchResult(request, outcome, webhook_id, ids, matched_by, lead.waiting)

    def _resolve(self, webhook_id: str, ids: Identifiers, received_us: int) -> tuple[_Lead | None, MatchedBy | None]:
        if ids.conversion_id is not None:
            lead = self._by_conversion.get(ids.conversion_id)
            if lead is not None and lead.waiting.webhook_id == webhook_id:
                return lead, MatchedBy.CONVERSION_ID
        if ids.external_id is not None and ids.advertiser_id is not None:
            candidates = self._by_external.get((webhook_id, ids.advertiser_id, ids.external_id))
            if candidates:
                created = [item[0] for item in candidates]
                position = bisect.bisect_right(created, received_us)
                chosen = candidates[position - 1] if position > 0 else candidates[0]
                return chosen[2], MatchedBy.EXTERNAL_ID
        return None, None

    @staticmethod
    def _judge(lead: _Lead, ids: Identifiers, interim: frozenset[str], received_us: int) -> Outcome:
        if received_us < lead.created_us:
            return Outcome.EARLY
        if lead.finished_us is not None:
            return Outcome.DUPLICATE
        if lead.deadline_us is not None and received_us > lead.deadline_us:
            return Outcome.LATE
        if ids.status is not None and ids.status in interim:
            return Outcome.INTERIM
        return Outcome.MATCHED

    def _see(self, moment_us: int) -> None:
        if self._latest_us is None or moment_us > self._latest_us:
            self._latest_us = moment_us

    def lead_outcomes(self, observation_end: datetime | None = None) -> list[LeadOutcome]:
        """Each lead's state as of ``observation_end`` (default: the latest timestamp seen)."""
        if observation_end is not None:
            end_us = to_us(observation_end)
        elif self._latest_us is not None:
            end_us = self._latest_us
        else:
            return []
        outcomes = []
        for lead in self._leads:
            finished = lead.finished_us is not None and lead.finished_us <= end_us
            seen = [t for t in lead.callbacks if t <= end_us]
            answered = [t for t in seen if t >= lead.created_us]
            if finished:
                state = LeadState.RECEIVED
            elif lead.deadline_us is not None and end_us > lead.deadline_us:
                state = LeadState.TIMED_OUT
            else:
                state = LeadState.WAITING
            outcomes.append(LeadOutcome(
                lead=lead.waiting,
                state=state,
                finished_at=lead.finished_at if finished else None,
                wait_s=(lead.finished_us - lead.created_us) / 1e6
                if finished and lead.finished_us is not None else None,
                callbacks=len(seen),
                first_callback_s=(min(answered) - lead.created_us) / 1e6 if answered else None,
                deadline=None if lead.deadline_us is None else from_us(lead.deadline_us),
            ))
        return outcomes
