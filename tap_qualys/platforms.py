"""The Qualys pod table, and how a config picks its VM API server and gateway URL.

Every subscription lives on one pod ("platform"), and each pod has two hosts: the VM API server
(``qualysapi.…``, Basic auth) and the gateway (``gateway.…``, JWT, CSAM and PCRS).
"""

from __future__ import annotations

import ipaddress
import typing as t
from dataclasses import dataclass
from urllib.parse import urlsplit

from tap_qualys.errors import PlatformError


@dataclass(frozen=True)
class Platform:
    """One Qualys pod: its code and its two API hosts."""

    code: str
    api_server: str
    gateway_url: str


PLATFORMS: dict[str, Platform] = {
    p.code: p
    for p in (
        Platform("US_01", "https://qualysapi.qualys.com", "https://gateway.qg1.apps.qualys.com"),
        Platform(
            "US_02", "https://qualysapi.qg2.apps.qualys.com", "https://gateway.qg2.apps.qualys.com"
        ),
        Platform(
            "US_03", "https://qualysapi.qg3.apps.qualys.com", "https://gateway.qg3.apps.qualys.com"
        ),
        Platform(
            "US_04", "https://qualysapi.qg4.apps.qualys.com", "https://gateway.qg4.apps.qualys.com"
        ),
        Platform("EU_01", "https://qualysapi.qualys.eu", "https://gateway.qg1.apps.qualys.eu"),
        Platform(
            "EU_02", "https://qualysapi.qg2.apps.qualys.eu", "https://gateway.qg2.apps.qualys.eu"
        ),
        Platform(
            "EU_03", "https://qualysapi.qg3.apps.qualys.it", "https://gateway.qg3.apps.qualys.it"
        ),
        Platform(
            "IN_01", "https://qualysapi.qg1.apps.qualys.in", "https://gateway.qg1.apps.qualys.in"
        ),
        Platform(
            "CA_01", "https://qualysapi.qg1.apps.qualys.ca", "https://gateway.qg1.apps.qualys.ca"
        ),
        # Qualys documents no gateway for AE_01; this follows the naming of every other pod.
        Platform(
            "AE_01", "https://qualysapi.qg1.apps.qualys.ae", "https://gateway.qg1.apps.qualys.ae"
        ),
        Platform(
            "UK_01",
            "https://qualysapi.qg1.apps.qualys.co.uk",
            "https://gateway.qg1.apps.qualys.co.uk",
        ),
        Platform(
            "AU_01",
            "https://qualysapi.qg1.apps.qualys.com.au",
            "https://gateway.qg1.apps.qualys.com.au",
        ),
        Platform(
            "KSA_01",
            "https://qualysapi.qg1.apps.qualysksa.com",
            "https://gateway.qg1.apps.qualysksa.com",
        ),
    )
}

# Qualys encodes the pod in the third character of every username ("abc_de" lives on US_01).
USERNAME_POD_CHARACTER: dict[str, str] = {
    "_": "US_01",
    "2": "US_02",
    "3": "US_03",
    "6": "US_04",
    "-": "EU_01",
    "5": "EU_02",
    "!": "EU_02",
    "B": "EU_03",
    "8": "IN_01",
    "9": "CA_01",
    "7": "AE_01",
    "1": "UK_01",
    "4": "AU_01",
    "A": "KSA_01",
}


def platform_for_code(code: str) -> Platform:
    """Look up a pod by code, accepting any case and ``-`` for ``_`` (``us-2`` is not valid)."""
    key = code.strip().upper().replace("-", "_")
    try:
        return PLATFORMS[key]
    except KeyError:
        valid = ", ".join(PLATFORMS)
        raise PlatformError("platform", f"unknown platform {code!r}; use one of {valid}") from None


def platform_for_username(username: str) -> Platform | None:
    """The pod a username belongs to, by its third character, or None when it says nothing."""
    if len(username) < 3:
        return None
    code = USERNAME_POD_CHARACTER.get(username[2])
    return PLATFORMS[code] if code else None


#: First path segments of Qualys endpoints: a URL with one was pasted from an API call, not a
#: reverse proxy's prefix.
_API_PATH_SEGMENTS = frozenset({"api", "qps", "msp", "fo", "rest", "pcrs", "auth", "am"})


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalize_url(setting: str, url: str) -> str:
    """Check an https:// URL; keep its path as a prefix (a reverse proxy), without a final /.

    Plain http is refused except on this machine (the simulator): the VM API sends the
    password in every call's Basic credential, the gateway in its /auth form.
    """
    parts = urlsplit(url.strip())
    # A pasted https://user:password@host must not echo the password in an error message.
    netloc = parts.netloc.rsplit("@", 1)[-1]
    shown = parts._replace(netloc=netloc).geturl()
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise PlatformError(setting, f"{shown!r} is not a URL; expected https://<host>")
    host = parts.hostname
    # Users paste the web UI address; the API lives on the same name with qualysapi.
    if host.startswith("qualysguard."):
        api_host = "qualysapi." + host.removeprefix("qualysguard.")
        raise PlatformError(
            setting,
            f"{shown!r} is the Qualys web UI, not the API; use https://{api_host}",
        )
    if parts.scheme == "http" and not _is_loopback(host):
        raise PlatformError(
            setting,
            f"{shown!r} is plain http: the credentials would cross the network in clear; use "
            "https:// (http is accepted only for this machine: localhost, 127.0.0.0/8, ::1)",
        )
    prefix = parts.path.rstrip("/")
    first = prefix.lstrip("/").split("/", 1)[0].lower()
    if first in _API_PATH_SEGMENTS:
        raise PlatformError(
            setting,
            f"{shown!r} holds a Qualys API path; give the server only, "
            f"{parts.scheme}://{netloc} (a path is kept only as a reverse proxy's prefix)",
        )
    return f"{parts.scheme}://{netloc}{prefix}"


def resolve_urls(config: t.Mapping[str, t.Any]) -> tuple[str, str]:
    """Return ``(api_server, gateway_url)`` for a tap config.

    Precedence: explicit ``api_server``/``gateway_url``, then ``platform``, then the pod encoded
    in the username. A gateway URL not given comes from that pod; an API server outside the
    table (a proxy, a test server) with no platform is assumed to serve the gateway too.
    """
    platform: Platform | None = None
    if config.get("platform"):
        platform = platform_for_code(str(config["platform"]))

    api_server = config.get("api_server")
    if api_server:
        api_server = normalize_url("api_server", str(api_server))
        by_server = next((p for p in PLATFORMS.values() if p.api_server == api_server), None)
        platform = platform or by_server

    if not api_server:
        platform = platform or platform_for_username(str(config.get("username") or ""))
        if platform is None:
            raise PlatformError(
                "api_server",
                "cannot tell the Qualys platform from the username; set platform "
                f"(one of {', '.join(PLATFORMS)}) or api_server",
            )
        api_server = platform.api_server

    gateway_url = config.get("gateway_url")
    if gateway_url:
        gateway_url = normalize_url("gateway_url", str(gateway_url))
    elif platform is not None:
        gateway_url = platform.gateway_url
    else:
        # A custom API server (a proxy or a test server) with no pod: assume it serves both.
        gateway_url = api_server

    return api_server, gateway_url
