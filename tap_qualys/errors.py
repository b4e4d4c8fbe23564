"""The tap's exception types, in one place: the parser, the retry policy, the streams and the CLI
all import them from here, so no layer imports another only to name its errors.

Two families reach the user. ``QualysAPIError`` (and ``GatewayAuthError``) end a sync with one
line that names the stream, endpoint and Qualys code; ``StateError``, ``PlatformError`` and
``CastError`` name the state file, the setting or the value that is wrong. The
``QualysResponseError`` family is what the XML parser raises about a body; ``retries`` decides
which of them are worth another attempt.
"""

from __future__ import annotations

from singer_sdk.exceptions import FatalAPIError


class QualysAPIError(FatalAPIError):
    """A call failed for good; the message is the one line the user sees."""


class GatewayAuthError(QualysAPIError):
    """The gateway gave no usable token: bad credentials, or an answer that is not a JWT."""


class QualysResponseError(Exception):
    """A Qualys response body that is not a usable page of records."""


class QualysXMLError(QualysResponseError):
    """Malformed or unsafe XML, or content that does not fit the schema. Not retryable."""


class QualysTruncatedResponseError(QualysResponseError):
    """The body ended before the document did (dropped stream, incident note). Retryable."""


class SimpleReturnError(QualysResponseError):
    """Qualys answered with a SIMPLE_RETURN document (an error, even with HTTP 200)."""

    def __init__(self, code: int | None, text: str, items: dict[str, str] | None = None) -> None:
        self.code = code
        self.text = text
        self.items: dict[str, str] = dict(items or {})
        super().__init__(f"Qualys SIMPLE_RETURN (code {code}): {text}")


class QPSResponseError(QualysResponseError):
    """A QPS ``ServiceResponse`` whose ``responseCode`` is not SUCCESS (e.g. INVALID_REQUEST)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"Qualys QPS {code}: {message}")


class CastError(ValueError):
    """Text that does not fit its schema type. ``qualys_xml`` adds the element name."""


class PlatformError(ValueError):
    """A platform, api_server or gateway_url setting that cannot be used, with the fix."""

    def __init__(self, setting: str, message: str) -> None:
        """Name the offending setting first, so the one-line error says what to change."""
        super().__init__(f"{setting}: {message}")
        self.setting = setting


class StateError(Exception):
    """A state the tap cannot start from; the message is the whole explanation."""

    #: Where the state came from, said first: the CLI sets the ``--state`` file's name.
    source = "state"

    def __str__(self) -> str:
        return f"{self.source}: {super().__str__()}"
