"""What the simulator was asked, for tests to assert on.

Every request is counted per (endpoint, appid, errcode). Token and ticket
calls are also kept as full :class:`CallRecord` entries; business calls
(the token checks consumers make all day long) are only counted unless
full logging is switched on, so a simulated week of ~1.2M business calls
stays cheap. Records carry token fingerprints, never tokens or secrets.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["CallLog", "CallRecord"]


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One request as WeChat saw it.

    ``errcode`` is 0 for success, the JSON errcode otherwise, and None when
    the answer carried no errcode (HTTP error, garbled body, timeout, 404).
    ``issued`` says whether a token or ticket was minted; ``token_fp`` is the
    fingerprint of the token issued or, for tickets and business calls, of
    the token presented; ``ticket_fp`` that of an issued ticket.
    """

    time: float
    server: int
    method: str
    endpoint: str
    appid: str | None
    errcode: int | None
    issued: bool = False
    token_fp: str | None = None
    ticket_fp: str | None = None
    agentid: str | None = None
    foreign: bool = False
    fault: str | None = None
    http_status: int = 200
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy."""
        return asdict(self)


class CallLog:
    """Counters for every call plus a bounded detailed log. Not thread-safe:
    the simulator's lock guards it."""

    def __init__(self, *, limit: int = 1_000_000) -> None:
        self._records: deque[CallRecord] = deque(maxlen=limit)
        self._counts: Counter[tuple[str, str | None, int | None]] = Counter()
        self._dropped = 0
        self._total = 0

    def add(self, record: CallRecord) -> None:
        """Count ``record`` and keep it in the log."""
        self.tally(record.endpoint, record.appid, record.errcode)
        if len(self._records) == self._records.maxlen:
            self._dropped += 1
        self._records.append(record)

    def tally(self, endpoint: str, appid: str | None, errcode: int | None) -> None:
        """Count a call without keeping its details."""
        self._total += 1
        self._counts[(endpoint, appid, errcode)] += 1

    def count(
        self,
        endpoint: str | None = None,
        appid: str | None = None,
        *,
        errcode: int | None = None,
        since: float | None = None,
        errcode_given: bool = False,
    ) -> int:
        """Count calls matching every filter given.

        Without ``since`` the counters answer (exact for every endpoint);
        with ``since`` only the detailed log can, so business calls are seen
        only when they are logged in detail.
        """
        if since is None:
            return sum(
                n
                for (ep, app, code), n in self._counts.items()
                if (endpoint is None or ep == endpoint)
                and (appid is None or app == appid)
                and (not errcode_given or code == errcode)
            )
        return sum(
            1
            for r in self._records
            if r.time >= since
            and (endpoint is None or r.endpoint == endpoint)
            and (appid is None or r.appid == appid)
            and (not errcode_given or r.errcode == errcode)
        )

    def records(self) -> list[CallRecord]:
        """A copy of the detailed log, oldest first."""
        return list(self._records)

    def counters(self) -> list[dict[str, Any]]:
        """The counters as JSON-able rows."""
        return [
            {"endpoint": ep, "appid": app, "errcode": code, "count": n}
            for (ep, app, code), n in sorted(
                self._counts.items(), key=lambda kv: (kv[0][0], kv[0][1] or "", kv[0][2] or 0)
            )
        ]

    @property
    def total(self) -> int:
        """Every call counted so far."""
        return self._total

    @property
    def dropped(self) -> int:
        """Detailed records pushed out of the bounded log."""
        return self._dropped
