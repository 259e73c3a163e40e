"""The domain's values: what a callback's outcome, a lead's state and a match can be.

Every layer speaks these words (the rules, the replay, the analysis, the receiver, the
generator), so they live below all of them. The rules behind them are in docs/semantics.md.
"""

from __future__ import annotations

import enum

__all__ = ["NOT_FOUND_BODY", "OK_BODY", "REASONS_404", "LeadState", "MatchedBy", "Outcome"]

#: The body of a 200 (production answers this small JSON document).
OK_BODY = b'{"status":"ok"}'
#: Production's answer to every callback that does not finish or update a wait, byte for byte.
NOT_FOUND_BODY = b'{"code":404,"message":"Waiting Webhook not found for provided token and identifiers"}'


class Outcome(enum.StrEnum):
    """Why a callback was answered the way it was."""

    MATCHED = "matched"
    INTERIM = "interim"
    EARLY = "early"
    DUPLICATE = "duplicate"
    LATE = "late"
    WRONG_WEBHOOK = "wrong_webhook"
    NOT_FOUND = "not_found"
    NO_IDENTIFIERS = "no_identifiers"
    UNKNOWN_TOKEN = "unknown_token"
    # Last: the outcomes are stored as their position (audit/replay.py), and this one is not a judgement.
    REFUSED = "refused"

    @property
    def status_code(self) -> int | None:
        """The answer the rules give; None for ``refused``, answered whatever the receiver answered."""
        if self is Outcome.REFUSED:
            return None
        return 200 if self in (Outcome.MATCHED, Outcome.INTERIM) else 404


class MatchedBy(enum.StrEnum):
    CONVERSION_ID = "conversion_id"
    EXTERNAL_ID = "external_id"


class LeadState(enum.StrEnum):
    RECEIVED = "received"
    TIMED_OUT = "timed_out"
    WAITING = "waiting"


#: Every outcome answered 404, in the order reports show them (``refused`` has no answer of its own).
REASONS_404 = tuple(o.value for o in Outcome if o.status_code == 404)
