"""What the live side's two ends agree on over the wire: the replay headers and the receiver's paths.

``serve`` (live/receiver.py) reads them and ``replay-http`` (live/replayhttp.py) writes them; keeping them
here means neither end imports the other. The answers' bodies are domain values (domain.py).
"""

from __future__ import annotations

import json

__all__ = ["ADMIN_PREFIX", "HEALTH_PATH", "REGISTER_PATH", "REPLAY_CLOCK_HEADER", "REPLAY_ID_HEADER", "json_error"]

#: With ``--replay-clock``: the request's ``received_at`` (ISO 8601).
REPLAY_CLOCK_HEADER = "x-replay-received-at"
#: With ``--replay-clock``: the replayer's name for the request; a repeat is a retry (docs/http.md).
REPLAY_ID_HEADER = "x-replay-request-id"

ADMIN_PREFIX = "/admin/"
REGISTER_PATH = "/admin/waiting-webhooks"
HEALTH_PATH = "/admin/health"


def json_error(status: int, message: str) -> bytes:
    """The body of every answer but 200 and the callbacks' 404: ``{"code":…,"message":…}``, compact UTF-8."""
    return json.dumps({"code": status, "message": message}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
