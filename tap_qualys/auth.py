"""Authentication for the Qualys APIs."""

from __future__ import annotations

import base64
import binascii
import json
import re
import sys
import threading
import time
import typing as t
import weakref
from http import HTTPStatus

import requests
from singer_sdk.authenticators import APIAuthenticatorBase, BasicAuthenticator

from tap_qualys.errors import GatewayAuthError
from tap_qualys.retries import (
    CredentialSession,
    FailedAttempt,
    Kind,
    Verdict,
    classify_exception,
    classify_response,
)

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Callable, Mapping


def vm_api_authenticator(config: Mapping[str, t.Any]) -> BasicAuthenticator:
    """HTTP Basic auth, sent on every VM API call (no session cookie to expire mid-sync)."""
    return BasicAuthenticator(username=config["username"], password=config["password"])


# --- Gateway JWT (CSAM, PCRS) -------------------------------------------------------------------

#: Qualys gateway tokens live about 4 hours; assumed when a token's payload does not say.
DEFAULT_TOKEN_LIFETIME = 4 * 3600.0
#: Seconds before expiry at which the token is replaced (the ``token_refresh_margin`` default).
DEFAULT_TOKEN_REFRESH_MARGIN = 300.0
_AUTH_TIMEOUT = 60.0


#: A compact JWT: three base64url segments. Anything else (a line break, a space, a quote) could
#: not travel in an ``Authorization`` header, and the error saying so would print the token.
_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def jwt_claims(token: str) -> dict[str, t.Any]:
    """The payload of a JWT, decoded without verifying the signature.

    We only read ``exp``/``iat`` to schedule a refresh; the gateway checks the signature.
    Raises ``ValueError`` when ``token`` is not a JWT.
    """
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        msg = "not three dot-separated segments"
        raise ValueError(msg)
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = "payload is not base64url JSON"
        raise ValueError(msg) from exc
    if not isinstance(claims, dict):
        msg = "payload is not a JSON object"
        raise ValueError(msg)
    return claims


def jwt_lifetime(claims: Mapping[str, t.Any], *, now: float) -> float:
    """Seconds a freshly issued token stays valid.

    ``exp - iat`` is preferred over ``exp - now``: it does not depend on our clock agreeing with
    the gateway's (the simulator even moves its clock on demand).
    """
    exp, iat = claims.get("exp"), claims.get("iat")
    if isinstance(exp, (int, float)) and isinstance(iat, (int, float)) and exp > iat:
        return float(exp - iat)
    if isinstance(exp, (int, float)) and exp > now:
        return float(exp - now)
    return DEFAULT_TOKEN_LIFETIME


class GatewayTokenAuthenticator(APIAuthenticatorBase):
    """``Authorization: Bearer <jwt>`` for the gateway, one token shared by streams and threads.

    The token is fetched on first use, replaced ``refresh_margin`` seconds before it expires, and
    dropped when the gateway answers 401 with it (:meth:`invalidate`), so the next request gets a
    new one. Concurrent callers wait on one lock, so a refresh is one ``/auth`` call, not one per
    thread. The token is never logged and never put into an error message.
    """

    def __init__(
        self,
        *,
        gateway_url: str,
        username: str,
        password: str,
        refresh_margin: float = DEFAULT_TOKEN_REFRESH_MARGIN,
        user_agent: str | None = None,
        verify: bool | str = True,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
    ) -> None:
        """Configure the token exchange; nothing is sent until the first request."""
        super().__init__()
        if logger is not None:
            self.logger = logger
        self.auth_url = gateway_url.rstrip("/") + "/auth"
        self._username = username
        self._password = password
        self.refresh_margin = refresh_margin
        self._clock = clock
        self._verify = verify
        # The password goes in this session's request bodies: never to another host.
        self._session = CredentialSession()
        if user_agent:
            self._session.headers["User-Agent"] = user_agent
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        #: How many tokens were obtained (the first one included); for logs and tests.
        self.tokens_issued = 0

    @override
    def authenticate_request(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        return request

    def token(self) -> str:
        """The current token, fetched or refreshed first when needed."""
        with self._lock:
            if self._token is None or self._clock() >= self._refresh_at:
                self._token, self._refresh_at = self._fetch()
            return self._token

    def invalidate(self, request: requests.PreparedRequest | None) -> None:
        """Forget the token ``request`` was sent with, after the gateway answered it with 401.

        Only that exact token is dropped: when several threads see the same 401, the first one
        refreshes and the others reuse its new token instead of refreshing again.
        """
        sent = request.headers.get("Authorization", "") if request is not None else ""
        with self._lock:
            if self._token is not None and sent == f"Bearer {self._token}":
                self._token = None

    def _fetch(self) -> tuple[str, float]:
        started = self._clock()
        try:
            response = self._session.post(
                self.auth_url,
                data={
                    "username": self._username,
                    "password": self._password,
                    "token": "true",
                    "permissions": "true",
                },
                timeout=_AUTH_TIMEOUT,
                # Per call, not on the session: requests lets REQUESTS_CA_BUNDLE override a
                # session's verify, and the ca_bundle setting must win.
                verify=self._verify,
            )
        except requests.exceptions.SSLError as exc:
            # Verification fails the same way every time; retrying only delays the message.
            msg = (
                f"TLS certificate of {self.auth_url} could not be verified "
                f"({_ssl_reason(exc)}). Set `ca_bundle` to the PEM file of the CA that signed "
                "it (e.g. a TLS-inspecting proxy's), or `verify_ssl` to false."
            )
            raise GatewayAuthError(msg) from None
        except requests.RequestException as exc:
            verdict = classify_exception(exc) or Verdict(Kind.BACKOFF, type(exc).__name__)
            if verdict.kind is Kind.FATAL:  # a redirect to another host
                raise GatewayAuthError(f"gateway /auth: {verdict.reason}") from None
            if verdict.kind is Kind.BACKOFF:
                verdict = Verdict(Kind.BACKOFF, f"gateway /auth: {type(exc).__name__}")
            raise FailedAttempt(verdict) from None
        status = response.status_code
        if status in {HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN}:
            msg = (
                f"Qualys gateway rejected the username/password at {self.auth_url} "
                f"(HTTP {status}). Check `username`/`password`, and that the account may use "
                "the API of the CSAM / Policy Compliance modules."
            )
            raise GatewayAuthError(msg)
        if status not in {HTTPStatus.OK, HTTPStatus.CREATED}:
            verdict = classify_response(
                status, None, f"gateway /auth: {response.reason}", response.headers
            )
            if verdict.kind is Kind.FATAL:
                msg = f"Qualys gateway token request to {self.auth_url} failed: HTTP {status}"
                raise GatewayAuthError(msg)
            raise FailedAttempt(verdict)
        token = response.text.strip()
        try:
            claims = jwt_claims(token)
        except ValueError as exc:
            # Never echo the body: if it is a token after all, it must not reach a log.
            msg = (
                f"Qualys gateway answered {self.auth_url} with HTTP {status} but the body "
                f"({len(token)} characters, Content-Type "
                f"{response.headers.get('Content-Type', 'none')!r}) is not a JWT: {exc}. "
                "Check `gateway_url` points at the gateway (gateway.<pod>.apps.qualys...)."
            )
            # An empty or cut-short answer is what a gateway hiccup looks like: retried, and
            # this message is the one line the user sees once the retries are spent.
            raise FailedAttempt(Verdict(Kind.BACKOFF, msg)) from None
        if not _JWT_SHAPE.fullmatch(token):
            # Not retried: a gateway that issues such a token issues it again.
            msg = (
                f"Qualys gateway answered {self.auth_url} with a token ({len(token)} characters) "
                "holding characters a JWT cannot have (a line break, a space or a symbol), so "
                "it cannot be sent in a header; not using it. Check `gateway_url` points at "
                "the Qualys gateway and not at a proxy that rewrites its answers."
            )
            raise GatewayAuthError(msg)
        lifetime = jwt_lifetime(claims, now=time.time())
        # A margin longer than the token itself would refresh on every request.
        margin = min(self.refresh_margin, lifetime / 4)
        self.tokens_issued += 1
        self.logger.info(
            "Obtained Qualys gateway token #%d, valid %.0f s; refreshing %.0f s before expiry",
            self.tokens_issued,
            lifetime,
            margin,
        )
        return token, started + lifetime - margin


def _ssl_reason(exc: BaseException) -> str:
    """The last, most specific part of an SSL error, e.g. "self-signed certificate"."""
    _, marker, detail = str(exc).partition("certificate verify failed:")
    if not marker:
        return "SSL error"
    return detail.partition("(_ssl")[0].strip() or "certificate verify failed"


_authenticators: weakref.WeakKeyDictionary[object, GatewayTokenAuthenticator] = (
    weakref.WeakKeyDictionary()
)
_authenticators_lock = threading.Lock()


def gateway_authenticator(
    owner: object,
    factory: Callable[[], GatewayTokenAuthenticator],
) -> GatewayTokenAuthenticator:
    """The one gateway authenticator of ``owner`` (the tap), created by ``factory`` on first use.

    Keyed by the tap instance rather than stored globally, so two taps in one process (tests)
    never share a token.
    """
    with _authenticators_lock:
        authenticator = _authenticators.get(owner)
        if authenticator is None:
            authenticator = _authenticators[owner] = factory()
        return authenticator
