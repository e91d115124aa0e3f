"""Human output: durations, the status and refresh tables, colour only when asked for.

Tables are drawn by rich without borders: left-aligned columns two spaces apart, never
wrapped, trailing spaces trimmed. Colour marks the text of a cell, never its padding, so
the coloured table stripped of escape codes is exactly the plain one.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text
from wechat_token.record import CredentialRecord, iso, wechat_day
from wechat_token.redaction import redact

from .apps import SHARD_LIMIT_BYTES, Change, Listing
from .refresh import FAILED
from .status import ERROR, OK, WARN, classify, has_current_error

SHORT_MESSAGE_CHARS: Final = 40
RED: Final = "red"
YELLOW: Final = "yellow"
GREEN: Final = "green"
_LEVEL_STYLE: Final = {OK: GREEN, WARN: YELLOW, ERROR: RED}
# Wide enough that no table is ever wrapped or cut.
_UNBOUNDED_WIDTH: Final = 100_000

_REFUSED = re.compile(r"WeChat \S+ refused app '[^']*' with -?\d+ \((.*?)\): ")

# A table cell: its text and a rich style (or None).
Cell = tuple[str, str | None]

STATUS_COLUMNS: Final = (
    "STATUS",
    "APP",
    "KIND",
    "FINGERPRINT",
    "AGE",
    "EXPIRES IN",
    "PREV GRACE",
    "LAST SUCCESS",
    "LAST ERROR",
    "CALLS TODAY",
    "LEASE",
)
APPS_COLUMNS: Final = ("STATUS", "APP", "TYPE", "APPID", "AGENTID", "TICKETS", "SHARD")
_APP_STYLE: Final = {"ok": GREEN, "disabled": YELLOW, "refused": RED}
REFRESH_COLUMNS: Final = (
    "APP",
    "KIND",
    "OUTCOME",
    "FINGERPRINT",
    "EXPIRES AT",
    "WECHAT CALLS",
    "ERROR",
)


def use_color(mode: str, stream: TextIO, env: Mapping[str, str]) -> bool:
    """``always``/``never``; ``auto``: a terminal, and ``NO_COLOR`` unset or empty."""
    if mode != "auto":
        return mode == "always"
    if env.get("NO_COLOR"):
        return False
    isatty: Callable[[], bool] | None = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


# --- human times and messages ---------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``1 h 55 min``, ``2 d 3 h`` (rounded down; sign ignored)."""
    total = int(abs(seconds))
    if total < 60:
        return f"{total} s"
    minutes = total // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def ago(ts: float | None, now: float) -> str:
    return "never" if ts is None else f"{human_duration(max(0.0, now - ts))} ago"


def clean(message: str | None, *secrets: str | None) -> str:
    """One line, anything token-like masked (the refresher never stores any: belt and braces)."""
    return redact(" ".join((message or "").split()), *(s for s in secrets if s))


def short(message: str | None, *secrets: str | None) -> str:
    text = clean(message, *secrets)
    # The refresher's "WeChat <path> refused app '<id>' with <code> (<errmsg>): <advice>":
    # in a table cell, WeChat's own errmsg says the most in the fewest characters.
    match = _REFUSED.match(text)
    if match:
        text = match.group(1)
    if len(text) > SHORT_MESSAGE_CHARS:
        text = text[: SHORT_MESSAGE_CHARS - 3].rstrip() + "..."
    return text


# --- tables ---------------------------------------------------------------------------------


def _text(text: str, style: str | None) -> Text:
    cell = Text(text, no_wrap=True)
    if style:
        cell.stylize(style, 0, len(text))  # the text only, not the padding rich adds
    return cell


def render_table(header: Sequence[str], rows: Sequence[Sequence[Cell]], *, color: bool) -> str:
    """Left-aligned columns two spaces apart, bold titles; escape codes only with ``color``."""
    table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 1), header_style="")
    for title in header:
        table.add_column(_text(title, "bold"), no_wrap=True, overflow="ignore")
    for row in rows:
        table.add_row(*(_text(text, style) for text, style in row))
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        # Both sizes given: rich then reads neither the terminal nor COLUMNS, nor TERM=dumb.
        width=_UNBOUNDED_WIDTH,
        height=25,
        force_terminal=color,
        color_system="standard" if color else None,
        no_color=not color,
        highlight=False,
        markup=False,
        emoji=False,
        legacy_windows=False,
    )
    console.print(table)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())


# --- status ---------------------------------------------------------------------------------


def _expires_cell(record: CredentialRecord, now: float, soon: bool) -> Cell:
    if record.expires_at is None or not record.has_value:
        return ("no value", RED)
    if record.remaining(now) <= 0:
        return (f"expired {ago(record.expires_at, now)}", RED)
    return (human_duration(record.remaining(now)), YELLOW if soon else None)


def _grace_cell(record: CredentialRecord, now: float) -> Cell:
    until = record.previous_valid_until
    if until is None:
        return ("-", None)
    if until > now:
        return (human_duration(until - now), None)
    return (f"ended {ago(until, now)}", None)


def _error_cell(record: CredentialRecord, now: float) -> Cell:
    if record.last_error_code is None:
        return ("-", None)
    text = f"{record.last_error_code} {short(record.last_error_message, record.value)}"
    text = f"{text.rstrip()} ({ago(record.last_error_at, now)})"
    return (text, RED if has_current_error(record) else None)


def _lease_cell(record: CredentialRecord, now: float) -> Cell:
    if not record.lease_is_live(now) or record.lease_until is None:
        return ("-", None)
    left = human_duration(record.lease_until - now)
    return (f"{record.lease_owner or '?'} ({left} left)", None)


def status_row(record: CredentialRecord, now: float, budget: int) -> list[Cell]:
    """The table row for one credential (plain text plus colour hints)."""
    health = classify(record, now, budget)
    age = "-" if record.fetched_at is None else human_duration(max(0.0, record.age(now)))
    over_budget = "budget" in health.warnings
    return [
        (health.level.upper(), _LEVEL_STYLE[health.level]),
        (record.app_id, None),
        (record.kind, None),
        (record.fingerprint() or "-", None),
        (age, None),
        _expires_cell(record, now, "expires_soon" in health.warnings),
        _grace_cell(record, now),
        (ago(record.last_success_at, now), None),
        _error_cell(record, now),
        (f"{record.calls_today(now)}/{budget}", YELLOW if over_budget else None),
        _lease_cell(record, now),
    ]


def problem_line(record: CredentialRecord, now: float, budget: int) -> str:
    """The full story of an unhealthy credential, which the table's cells abbreviate."""
    health = classify(record, now, budget)
    parts = []
    if "missing_value" in health.problems:
        parts.append("no value stored")
    if "expired" in health.problems:
        parts.append(f"expired {ago(record.expires_at, now)}")
    if record.last_error_code is not None and "last_error" in health.problems:
        category = f" ({record.last_error_class})" if record.last_error_class else ""
        parts.append(
            f"last error {record.last_error_code}{category} {ago(record.last_error_at, now)}: "
            f"{clean(record.last_error_message, record.value) or 'no details'}"
        )
    if record.trigger_failures:
        parts.append(
            f"{record.trigger_failures} forced or passive refresh(es) failed since the last success"
        )
    return f"- {record.app_id}/{record.kind}: " + "; ".join(parts)


def status_text(
    records: Sequence[CredentialRecord],
    *,
    table: str,
    now: float,
    budget: int,
    app_id: str | None,
    color: bool,
) -> str:
    where = f"app '{app_id}' in table '{table}'" if app_id else f"table '{table}'"
    if not records:
        return (
            f"No credentials {'for' if app_id else 'in'} {where}: has the refresher run, "
            "and is the app in the registry secret?"
        )
    levels = [classify(record, now, budget).level for record in records]
    footer = (
        f"{len(records)} credential(s) in {where}: {levels.count(OK)} ok, "
        f"{levels.count(WARN)} warn, {levels.count(ERROR)} error. WeChat day "
        f"{wechat_day(now)} (UTC+8), budget {budget} calls per credential, checked {iso(now)}."
    )
    rows = [status_row(record, now, budget) for record in records]
    text = render_table(STATUS_COLUMNS, rows, color=color) + "\n\n" + footer
    details = [problem_line(r, now, budget) for r in records if classify(r, now, budget).problems]
    if details:
        text += "\n\nNeeds attention:\n" + "\n".join(details)
    return text


# --- refresh --------------------------------------------------------------------------------


def _refresh_row(entry: Mapping[str, Any]) -> list[Cell]:
    outcome = str(entry.get("outcome"))
    style = GREEN if outcome == "refreshed" else RED if outcome in FAILED else YELLOW
    error = entry.get("error")
    error_text = "-"
    if isinstance(error, dict):
        error_text = f"{error.get('code', '?')} {short(str(error.get('message') or ''))}"
    return [
        (str(entry.get("app_id") or "-"), None),
        (str(entry.get("kind") or "-"), None),
        (outcome, style),
        (str(entry.get("fingerprint") or "-"), None),
        (str(entry.get("expires_at") or "-"), None),
        (str(entry.get("wechat_calls", 0)), None),
        (redact(error_text.rstrip()), RED if isinstance(error, dict) else None),
    ]


def refresh_text(entries: Sequence[Mapping[str, Any]], *, color: bool) -> str:
    if not entries:
        return "The refresher answered without any credential entry."
    return render_table(REFRESH_COLUMNS, [_refresh_row(e) for e in entries], color=color)


# --- apps -----------------------------------------------------------------------------------


def apps_text(listing: Listing, *, color: bool) -> str:
    """The registry's entries (never a secret), its secrets' fill, and what needs fixing."""
    rows = [
        [
            (row.status.upper(), _APP_STYLE.get(row.status)),
            (row.app_id, None),
            (row.type, None),
            (row.appid, None),
            (row.agentid or "-", None),
            (",".join(row.tickets) or "-", None),
            (row.shard, None),
        ]
        for row in listing.rows
    ]
    counts = {status: sum(r.status == status for r in listing.rows) for status in _APP_STYLE}
    parts = [render_table(APPS_COLUMNS, rows, color=color)] if rows else ["No apps."]
    parts.append(
        f"{len(listing.rows)} entr{'y' if len(listing.rows) == 1 else 'ies'} in "
        f"{len(listing.shards)} registry secret(s): {counts['ok']} ok, {counts['disabled']} "
        f"disabled, {counts['refused']} refused."
        + "".join(
            f"\n- {s.shard_id}: {len(s.document)} entr{'y' if len(s.document) == 1 else 'ies'}, "
            f"{s.size} of {SHARD_LIMIT_BYTES} bytes" + ("" if s.version else " (no value yet)")
            for s in listing.shards
        )
    )
    attention = [f"- {row.app_id} in {row.shard}: {row.reason}" for row in listing.rows
                 if row.status == "refused"]  # fmt: skip
    attention += [
        f"- registry secret {sid}: {message}" for sid, message in listing.unreadable.items()
    ]
    if attention:
        parts.append("Needs attention:\n" + "\n".join(attention))
    return "\n\n".join(parts)


def change_text(change: Change) -> str:
    """One line per shard written, and the new shard if one was created."""
    lines = []
    if change.created:
        policy = (
            "its resource policy"
            if change.policy_copied
            else "no resource policy (the first shard has none)"
        )
        lines.append(
            f"Created registry secret {change.created} with the first shard's KMS key and {policy}."
        )
    kind = f" ({change.type})" if change.type else ""
    preposition = "to" if change.action == "added" else "from"
    for shard, version, size, apps in zip(
        change.shards, change.versions, change.sizes, change.apps, strict=True
    ):
        lines.append(
            f"{change.action.capitalize()} {change.app_id}{kind} {preposition} registry secret "
            f"{shard}: now {apps} entr{'y' if apps == 1 else 'ies'}, {size} of "
            f"{SHARD_LIMIT_BYTES} bytes (version {version})."
        )
    lines.append(
        "The refresher sees the change within its registry cache (60 s) and refreshes the "
        "app on its next scheduled run."
        if change.action == "added"
        else "The refresher stops refreshing it within its registry cache (60 s); its record "
        "stays in the table until it expires."
    )
    return "\n".join(lines)
