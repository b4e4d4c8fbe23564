"""The one retry and limit policy for Qualys calls.

Qualys hides two different limits behind HTTP 409 (1960 concurrency, 1965 rate), answers some
failures with HTTP 200, and drops long bodies part-way. This module decides, for every failed
attempt, whether to retry, how long to wait and what to tell the user; the streams only run
their attempts through :meth:`RetryPolicy.run`.
"""

from __future__ import annotations

import enum
import http.client
import json
import logging
import random
import sys
import threading
import time
import typing as t
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import requests
import urllib3.exceptions

from tap_qualys.errors import (
    QPSResponseError,
    QualysAPIError,
    QualysResponseError,
    QualysTruncatedResponseError,
)

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    from collections.abc import Callable, Mapping

T = t.TypeVar("T")

#: Statuses Qualys uses for "try again later" (202 is "duplicate operation, retry later").
RETRYABLE_STATUSES = frozenset({202, 429, 500, 502, 503, 504, 520})
#: 1920: blocked by an existing operation; it clears by itself.
RETRYABLE_CODES = frozenset({1920})
#: Documented codes that mean the request itself is wrong (1901-1922) or the account needs a
#: person (2003 registration, 2011 SecureID): sending it again cannot help.
FATAL_CODES = frozenset({1901, 1903, 1904, 1905, 1907, 1908, 1922, 2003, 2011})
CONCURRENCY_LIMIT_CODE = 1960
RATE_LIMIT_CODE = 1965

#: Seconds of backoff a call may spend on a server that has not answered once this run (refused
#: connection, unresolvable name): a wrong URL or a server that is down must not take the
#: minutes of the full retry budget to be reported; a brief restart is still waited out.
FIRST_CONTACT_BUDGET = 20.0
#: Seconds to open a connection. Without it connecting waited as long as an answer may take
#: (request_timeout, 30 min), so a firewall that drops packets was not reported for that long.
CONNECT_TIMEOUT = 15.0

#: Pace calls once fewer than this many are left in the rate window.
LOW_REMAINING_CALLS = 20
#: The longest rate-limit wait honoured by default (the ``max_rate_limit_wait`` setting).
DEFAULT_MAX_RATE_LIMIT_WAIT = 3600.0


class Kind(enum.Enum):
    """What to do after a failed attempt."""

    BACKOFF = "backoff"  # transient: exponential backoff with jitter
    RATE_LIMIT = "rate_limit"  # 409/1965: wait exactly what Qualys says
    CONCURRENCY = "concurrency"  # 409/1960: back off and use one parallel slot fewer
    UNREACHABLE = "unreachable"  # no connection to a server that never answered this run
    FATAL = "fatal"  # retrying cannot help


@dataclass(frozen=True)
class Verdict:
    """The policy's reading of one failed attempt."""

    kind: Kind
    reason: str
    wait: float | None = None
    #: The server (scheme://host:port) an UNREACHABLE verdict is about.
    server: str | None = None


class FailedAttempt(Exception):
    """One attempt failed; the verdict says whether and when to try again."""

    def __init__(self, verdict: Verdict) -> None:
        """Keep the verdict for :meth:`RetryPolicy.run`."""
        super().__init__(verdict.reason)
        self.verdict = verdict


def _to_float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def classify_response(
    status: int,
    code: int | None,
    text: str,
    headers: Mapping[str, str],
    items: Mapping[str, str] | None = None,
) -> Verdict:
    """Classify a failed answer: an HTTP error status, or a SIMPLE_RETURN with a CODE.

    ``text`` is Qualys' own TEXT (or a short reason) and goes into the message verbatim.
    """
    reason = f"HTTP {status}" + (f" CODE {code}" if code is not None else "") + f": {text}"
    if code == CONCURRENCY_LIMIT_CODE:
        return Verdict(Kind.CONCURRENCY, reason)
    if code == RATE_LIMIT_CODE:
        # The header is the documented source; the SECONDS_TO_WAIT item says the same.
        wait = _to_float(headers.get("X-RateLimit-ToWait-Sec"))
        if wait is None:
            wait = _to_float((items or {}).get("SECONDS_TO_WAIT"))
        return Verdict(Kind.RATE_LIMIT, reason, wait)
    if code in RETRYABLE_CODES:
        return Verdict(Kind.BACKOFF, reason)
    if status in RETRYABLE_STATUSES and code not in FATAL_CODES:
        return Verdict(Kind.BACKOFF, reason, _to_float(headers.get("Retry-After")))
    if code is not None and code not in FATAL_CODES and (status == 200 or status >= 500):
        # An error document where data was expected (e.g. CODE 999 "Internal error" with HTTP
        # 200): a server-side failure, retried like a 5xx and fatal once the retries run out.
        return Verdict(Kind.BACKOFF, reason)
    # 2003/2011, 1901-1922, 401, 403 and anything else: a person has to fix something.
    return Verdict(Kind.FATAL, reason)


#: QPS responseCodes that a person has to act on: the same request fails the same way again.
QPS_FATAL_CODES = frozenset(
    {
        "INVALID_CREDENTIALS",
        "UNAUTHORIZED",
        "INVALID_REQUEST",
        "NOT_FOUND",
        "OBJECT_NOT_FOUND",
        "OPERATION_NOT_SUPPORTED",
    }
)
#: What to do about each fatal QPS code, appended to Qualys' own errorMessage.
_QPS_HINTS = {
    "INVALID_CREDENTIALS": "check username and password",
    "UNAUTHORIZED": (
        "the user needs API access and the Asset Management (tagging) permission, "
        "or deselect the tags stream"
    ),
}


def classify_qps(
    status: int, code: str | None, message: str, headers: Mapping[str, str]
) -> Verdict:
    """Classify a failed QPS answer (a ServiceResponse whose responseCode is not SUCCESS).

    Credentials, permissions and request errors (and HTTP 400-405) are fatal at once, with what
    to change; 429 waits as Qualys says; anything else (INTERNAL_ERROR, 5xx, an error code in
    an HTTP 200) is a server-side failure retried with backoff.
    """
    reason = f"HTTP {status}" + (f" {code}" if code else "") + f": {message}"
    if code == "INVALID_CREDENTIALS" or (code is None and status == 401):
        code = "INVALID_CREDENTIALS"
    hint = _QPS_HINTS.get(code or "")
    if hint:
        reason += f" ({hint})"
    if code in QPS_FATAL_CODES or status in (400, 401, 403, 404, 405):
        return Verdict(Kind.FATAL, reason)
    if status == 429:
        wait = _to_float(headers.get("X-RateLimit-ToWait-Sec")) or _to_float(
            headers.get("Retry-After")
        )
        return Verdict(Kind.RATE_LIMIT, reason, wait) if wait else Verdict(Kind.BACKOFF, reason)
    return Verdict(Kind.BACKOFF, reason, _to_float(headers.get("Retry-After")))


#: Exceptions that mean the connection or the body broke part-way: re-send the whole request.
TRANSIENT_EXCEPTIONS: tuple[type[BaseException], ...] = (
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    requests.exceptions.Timeout,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.ReadTimeoutError,
    http.client.IncompleteRead,
    ConnectionResetError,
    QualysTruncatedResponseError,
)


def transient(reason: str) -> FailedAttempt:
    """A failed attempt worth retrying with backoff, e.g. an unusable HTTP 200 body."""
    return FailedAttempt(Verdict(Kind.BACKOFF, reason))


def classify_exception(exc: BaseException) -> Verdict | None:
    """Classify an exception raised while sending or reading; None means not ours to retry."""
    if isinstance(exc, FailedAttempt):
        return exc.verdict
    refused = (
        RedirectRefused,
        requests.exceptions.TooManyRedirects,
        requests.exceptions.InvalidHeader,
    )
    if isinstance(exc, refused):  # the server (or a proxy) would answer the same way again
        return _refused_verdict(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        # requests files certificate failures under ConnectionError, but no retry fixes them.
        return Verdict(
            Kind.FATAL,
            f"TLS verification failed ({_first_line(exc)}); if the server uses a private CA, "
            "set ca_bundle to its PEM file",
        )
    if isinstance(exc, TRANSIENT_EXCEPTIONS):
        return _unreachable(exc) or Verdict(
            Kind.BACKOFF, f"{type(exc).__name__}: {_first_line(exc)}"
        )
    if isinstance(exc, QPSResponseError):
        # An error ServiceResponse inside an HTTP 200 (e.g. INTERNAL_ERROR).
        return classify_qps(200, exc.code, exc.message, {})
    # Malformed XML: the same request would bring the same document again.
    return Verdict(Kind.FATAL, _first_line(exc)) if isinstance(exc, QualysResponseError) else None


def _refused_verdict(exc: requests.RequestException) -> Verdict:
    """Fatal: a redirect to another server, a loop on the same one (a proxy's login page, a
    misrouted path), or headers urllib3 refuses (two Content-Lengths that disagree)."""
    if isinstance(exc, RedirectRefused):
        return Verdict(Kind.FATAL, str(exc))
    if isinstance(exc, requests.exceptions.InvalidHeader):
        return Verdict(Kind.FATAL, f"answer refused: {_first_line(exc)}; not retried")
    url = str(exc.request.url or "") if exc.request is not None else ""
    return Verdict(
        Kind.FATAL,
        f"{_redirect_text(url) or 'a call'} redirected more than 30 times on the same server "
        "(a redirect loop, e.g. a proxy's login page): not retried. Check api_server / "
        "gateway_url and any proxy in between",
    )


def _unreachable(exc: BaseException) -> Verdict | None:
    """An UNREACHABLE verdict when no connection opens to a server that never answered yet."""
    if not isinstance(exc, requests.exceptions.ConnectionError) or exc.request is None:
        return None
    failure = _connect_failure(exc)
    url = str(exc.request.url or "")
    if failure is None or has_answered(url):
        return None
    return Verdict(
        Kind.UNREACHABLE,
        f"cannot connect to {origin_text(url)} ({failure}); nothing has answered there since "
        "the run started. Check the URL (api_server, gateway_url or platform), that the server "
        "is up, and any proxy or firewall in between",
        server=origin_text(url),
    )


def _duration(seconds: float) -> str:
    """``86340`` -> ``"86340 s (23 h 59 min)"``: the seconds, and hours for long waits."""
    text = f"{seconds:.0f} s"
    if seconds >= 60:
        hours, minutes = divmod(round(seconds / 60), 60)
        text += f" ({hours} h {minutes} min)" if hours else f" ({minutes} min)"
    return text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def pacing_delay(headers: Mapping[str, str]) -> float:
    """How long to pause after a successful call so the rate window is not exhausted.

    Qualys answers with ToWait > 0 when a call must wait; when few calls remain, spread them at
    the subscription's average rate (window / limit) instead of running into 1965.
    """
    to_wait = _to_float(headers.get("X-RateLimit-ToWait-Sec")) or 0.0
    if to_wait > 0:
        return to_wait
    remaining = _to_float(headers.get("X-RateLimit-Remaining"))
    limit = _to_float(headers.get("X-RateLimit-Limit"))
    window = _to_float(headers.get("X-RateLimit-Window-Sec"))
    if remaining is None or not limit or not window or remaining >= LOW_REMAINING_CALLS:
        return 0.0
    return window / limit


@dataclass
class RequestStats:
    """Per-stream counters for the end-of-sync summary; shared by worker threads."""

    requests: int = 0
    retries: int = 0
    concurrency_409s: int = 0
    rate_409s: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, attr: str) -> None:
        """Add one to a counter."""
        with self._lock:
            setattr(self, attr, getattr(self, attr) + 1)


class RetryPolicy:
    """Run attempts until one succeeds, the error is fatal, or ``max_retries`` is spent."""

    def __init__(
        self,
        *,
        max_retries: int,
        backoff_base: float = 2.0,
        backoff_max: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        logger: logging.Logger | None = None,
        max_rate_limit_wait: float | None = DEFAULT_MAX_RATE_LIMIT_WAIT,
    ) -> None:
        """Configure the policy; ``sleep`` and ``jitter`` are injectable for tests.

        ``max_rate_limit_wait``: the longest wait a rate limit (409/1965, a gateway 429 with
        a wait) may ask for before the call fails instead; None waits whatever Qualys says.
        """
        self.max_retries = max_retries
        self.max_rate_limit_wait = max_rate_limit_wait
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.sleep = sleep
        self.jitter = jitter
        self.logger = logger or logging.getLogger(__name__)

    def wait_for(self, verdict: Verdict, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        if verdict.kind is Kind.RATE_LIMIT and verdict.wait is not None:
            return verdict.wait
        backoff = min(self.backoff_max, self.backoff_base * 2.0 ** (attempt - 1))
        if verdict.wait is not None:  # Retry-After on a 429/503
            backoff = max(backoff, verdict.wait)
        # Jitter in [0.5, 1.0) of the backoff, so parallel workers that hit the same 409 do
        # not come back in lock-step and collide again.
        return backoff * (0.5 + self.jitter() / 2)

    def check_rate_limit_wait(self, wait: float, label: str, reason: str) -> None:
        """Fail at once, in one line, when Qualys asks for a wait above max_rate_limit_wait.

        Qualys' own example ToWait is about 24 hours: waiting it out silently would look like
        a hung run, so the user decides (run later, or raise the setting).
        """
        limit = self.max_rate_limit_wait
        if limit is not None and wait > limit:
            msg = (
                f"{label} failed: Qualys asked to wait {_duration(wait)} before the next call, "
                f"more than max_rate_limit_wait ({_duration(limit)}); raise max_rate_limit_wait "
                f"to wait it out, or run later ({reason})"
            )
            raise QualysAPIError(msg)

    def run(
        self,
        attempt: Callable[[], T],
        *,
        label: str,
        stats: RequestStats,
        on_concurrency_limit: Callable[[], None] | None = None,
        on_rate_limit: Callable[[float], None] | None = None,
    ) -> T:
        """Call ``attempt`` under the policy; ``label`` is ``"<stream>: <path>"``.

        ``on_concurrency_limit`` hears of every 409/1960, ``on_rate_limit`` of every 1965 wait,
        so parallel callers of the same API can hold back too.
        """
        retries = 0
        while True:
            stats.count("requests")
            try:
                return attempt()
            except QualysAPIError as exc:
                # Errors raised below the call (e.g. the gateway token) don't know the stream.
                if str(exc).startswith(label):
                    raise
                raise type(exc)(f"{label} failed: {exc}") from None
            except Exception as exc:
                verdict = classify_exception(exc)
                if verdict is None:
                    raise
            if verdict.kind is Kind.FATAL:
                raise QualysAPIError(f"{label} failed: {verdict.reason}")
            if verdict.kind is Kind.CONCURRENCY:
                stats.count("concurrency_409s")
                if on_concurrency_limit is not None:
                    on_concurrency_limit()
            elif verdict.kind is Kind.RATE_LIMIT:
                stats.count("rate_409s")
            if retries >= self.max_retries:
                raise QualysAPIError(
                    f"{label} failed after {retries + 1} attempts: {verdict.reason}"
                )
            wait = self.wait_for(verdict, retries + 1)
            if verdict.kind is Kind.UNREACHABLE:
                wait = _spend_first_contact_budget(verdict.server or "", wait)
                if wait <= 0:
                    raise QualysAPIError(
                        f"{label} failed after {retries + 1} attempts: {verdict.reason}"
                    )
            if verdict.kind is Kind.RATE_LIMIT:
                self.check_rate_limit_wait(wait, label, verdict.reason)
            retries += 1
            stats.count("retries")
            if verdict.kind is Kind.RATE_LIMIT and on_rate_limit is not None:
                on_rate_limit(wait)
            self.logger.warning(
                "%s: retry %d/%d in %.1f s after %s",
                label,
                retries,
                self.max_retries,
                wait,
                verdict.reason,
            )
            self.sleep(wait)


# --- Where credentials may go, and which servers have answered ----------------------------------

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` of a URL, the default port filled in."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port


def origin_text(url: str) -> str:
    """``scheme://host[:port]`` of a URL: no user info, path or query, which may hold secrets."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"


def _redirect_text(url: str) -> str:
    """A redirect target for an error line: its origin and path, never user info or query."""
    parts = urlsplit(url)
    return origin_text(url) + parts.path


class RedirectRefused(requests.exceptions.RequestException):
    """A credential-bearing call was redirected to another scheme, host or port: not followed."""

    def __init__(self, status: int, source: str, target: str) -> None:
        """Say where the redirect pointed, never what the request carried."""
        super().__init__(
            f"HTTP {status} redirect from {origin_text(source)} to {_redirect_text(target)}, "
            "another scheme, host or port: not followed, so the credentials never go there. "
            "If that is the right server, set api_server / gateway_url to it"
        )
        self.target = target


_answered: set[tuple[str, str, int | None]] = set()
_answered_lock = threading.Lock()


def mark_answered(url: str) -> None:
    """Remember that the server of ``url`` answered once (any HTTP status) during this run."""
    key = origin(url)
    if key not in _answered:
        with _answered_lock:
            _answered.add(key)


#: Per server that never answered: (monotonic time of its first failure, seconds waited).
_first_contact: dict[str, tuple[float, float]] = {}


def _spend_first_contact_budget(server: str, wait: float) -> float:
    """The part of ``wait`` left in the budget of a server that never answered; 0 when spent.

    One budget per server, shared by every call and stream: the second call to a dead server
    fails at once instead of waiting again. Time spent failing counts too (a resolver can take
    seconds to say a name does not exist).
    """
    with _answered_lock:
        started, waited = _first_contact.setdefault(server, (time.monotonic(), 0.0))
        spent = max(waited, time.monotonic() - started)
        granted = max(min(wait, FIRST_CONTACT_BUDGET - spent), 0.0)
        _first_contact[server] = (started, waited + granted)
        return granted


def has_answered(url: str) -> bool:
    """Whether the server of ``url`` answered before: later connection failures are transient."""
    return origin(url) in _answered


def _connect_failure(exc: requests.exceptions.ConnectionError) -> str | None:
    """Why no connection could be opened (refused, name unknown, timed out), or None.

    None for failures after connecting (a reset, a cut body): those are transient.
    """
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    if isinstance(reason, urllib3.exceptions.NameResolutionError):
        return "the host name does not resolve"
    # NewConnectionError is a ConnectTimeoutError subclass in urllib3 2: test it first.
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        cause = reason.__cause__ or reason.__context__
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused: nothing listens on that port"
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
        return "no connection could be opened"
    if isinstance(reason, urllib3.exceptions.ConnectTimeoutError):
        return "connecting timed out"
    return None


class CredentialSession(requests.Session):
    """A session for calls that carry credentials (Basic auth, a password form, a bearer token).

    requests follows redirects anywhere: it drops an ``Authorization`` header on another host,
    but a 307/308 re-sends the body, which for the gateway's ``/auth`` is the password. Here a
    redirect to another scheme, host or port raises :class:`RedirectRefused` before anything is
    sent; one on the same server is followed as before. Every answer also marks its server as
    reached, so later connection failures get the full retry budget.
    """

    @override
    def get_redirect_target(self, resp: requests.Response) -> str | None:
        location = super().get_redirect_target(resp)
        if location is not None:
            target = urljoin(resp.url, location)
            if origin(target) != origin(resp.url):
                resp.close()
                raise RedirectRefused(resp.status_code, resp.url, target)
        return location

    @override
    def send(self, request: requests.PreparedRequest, **kwargs: t.Any) -> requests.Response:
        timeout = kwargs.get("timeout")
        if isinstance(timeout, (int, float)):
            kwargs["timeout"] = (min(CONNECT_TIMEOUT, timeout), timeout)
        response = super().send(request, **kwargs)
        mark_answered(str(request.url or ""))
        return response


# --- Gateway (CSAM, PCRS): JSON error bodies and 429 --------------------------------------------

HTTP_TOO_MANY_REQUESTS = 429


def _gateway_error_text(body: bytes) -> tuple[int | None, str]:
    """Qualys' code and text from a gateway error body, whichever of its JSON shapes it has.

    400: ``[{"response": {"code": 1905, "text": "..."}}]``; 401/404 and Spring errors:
    ``{"message": "...", "error": "..."}``; anything else (an HTML page from a proxy) is cut
    to a short plain-text reason.
    """
    try:
        doc = json.loads(body)
    except ValueError:
        text = " ".join(body[:300].decode("utf-8", "replace").split())
        return None, text or "no body"
    if isinstance(doc, list) and doc and isinstance(doc[0], dict):
        doc = doc[0]
    if isinstance(doc, dict):
        inner = doc.get("response")
        if isinstance(inner, dict):
            code = str(inner.get("code", ""))
            return (
                int(code) if code.isdigit() else None,
                str(inner.get("text") or inner.get("message") or ""),
            )
        for key in ("message", "responseMessage", "error"):
            if doc.get(key):
                return None, str(doc[key])
    return None, " ".join(str(doc)[:300].split())


def classify_gateway_response(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
) -> Verdict:
    """Classify a failed gateway answer (not 401: the token refresh handles that).

    A 429 waits exactly what ``Retry-After`` or ``X-RateLimit-ToWait-Sec`` says when present
    (§2: whether the gateway sends the VM API's headers is unsure, so both are read), and backs
    off otherwise. Qualys codes in 400 bodies (1905 invalid value, ...) are fatal.
    """
    code, text = _gateway_error_text(body)
    if status == HTTP_TOO_MANY_REQUESTS:
        reason = f"HTTP 429: {text}"
        wait = _to_float(headers.get("Retry-After"))
        if wait is None:
            wait = _to_float(headers.get("X-RateLimit-ToWait-Sec"))
        return Verdict(Kind.RATE_LIMIT if wait is not None else Kind.BACKOFF, reason, wait)
    return classify_response(status, code, text, headers)
