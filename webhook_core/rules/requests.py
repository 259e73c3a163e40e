"""A captured callback request, as the online matcher sees it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["CapturedRequest"]


@dataclass(frozen=True, slots=True)
class CapturedRequest:
    """One HTTP request received at the webhook endpoint.

    ``seq`` is the input order (line or entry number), the tie-break between
    requests received at the same instant. ``refused``: the reference receiver
    answered it without judging it (its capture log says so, docs/http.md), with
    ``recorded_status``; it is not judged again.
    """

    request_id: str
    received_at: datetime
    url: str
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    seq: int = 0
    recorded_status: int | None = None
    refused: bool = False

    def __post_init__(self) -> None:
        if self.received_at.tzinfo is None:
            raise ValueError("received_at must be timezone-aware")
        if self.refused and self.recorded_status is None:
            raise ValueError("a refused request needs recorded_status, the status it was answered")
