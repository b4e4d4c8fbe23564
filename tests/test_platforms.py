"""The pod table and how a config picks its servers."""

from __future__ import annotations

import pytest

from tap_qualys.errors import PlatformError
from tap_qualys.platforms import (
    PLATFORMS,
    USERNAME_POD_CHARACTER,
    normalize_url,
    platform_for_code,
    resolve_urls,
)


def test_table_covers_every_documented_pod() -> None:
    assert set(PLATFORMS) == {
        "US_01", "US_02", "US_03", "US_04", "EU_01", "EU_02", "EU_03",
        "IN_01", "CA_01", "AE_01", "UK_01", "AU_01", "KSA_01",
    }  # fmt: skip
    assert set(USERNAME_POD_CHARACTER.values()) == set(PLATFORMS)
    for platform in PLATFORMS.values():
        assert platform.api_server.startswith("https://qualysapi.")
        assert platform.gateway_url.startswith("https://gateway.")


@pytest.mark.parametrize(
    ("username", "api_server", "gateway_url"),
    [
        ("ab_cd", "https://qualysapi.qualys.com", "https://gateway.qg1.apps.qualys.com"),
        ("ab2cd", "https://qualysapi.qg2.apps.qualys.com", "https://gateway.qg2.apps.qualys.com"),
        ("ab-cd", "https://qualysapi.qualys.eu", "https://gateway.qg1.apps.qualys.eu"),
        ("ab!cd", "https://qualysapi.qg2.apps.qualys.eu", "https://gateway.qg2.apps.qualys.eu"),
        ("abBcd", "https://qualysapi.qg3.apps.qualys.it", "https://gateway.qg3.apps.qualys.it"),
        (
            "abAcd",
            "https://qualysapi.qg1.apps.qualysksa.com",
            "https://gateway.qg1.apps.qualysksa.com",
        ),
    ],
)
def test_username_third_character_names_the_pod(
    username: str, api_server: str, gateway_url: str
) -> None:
    assert resolve_urls({"username": username}) == (api_server, gateway_url)


def test_platform_beats_username_and_accepts_loose_spelling() -> None:
    assert resolve_urls({"username": "ab_cd", "platform": "eu-02"}) == (
        "https://qualysapi.qg2.apps.qualys.eu",
        "https://gateway.qg2.apps.qualys.eu",
    )


def test_unknown_platform_lists_the_valid_codes() -> None:
    with pytest.raises(
        PlatformError, match=r"^platform: unknown platform 'US_9'; use one of US_01, US_02"
    ):
        platform_for_code("US_9")


def test_pasted_web_ui_url_names_the_api_url() -> None:
    with pytest.raises(PlatformError) as info:
        resolve_urls(
            {"username": "ab_cd", "api_server": "https://qualysguard.qg2.apps.qualys.com/fo/"}
        )
    assert str(info.value) == (
        "api_server: 'https://qualysguard.qg2.apps.qualys.com/fo/' is the Qualys web UI, "
        "not the API; use https://qualysapi.qg2.apps.qualys.com"
    )


def test_explicit_server_keeps_its_pod_gateway_and_custom_server_serves_both() -> None:
    assert resolve_urls({"username": "xx", "api_server": "https://qualysapi.qualys.eu/"}) == (
        "https://qualysapi.qualys.eu",
        "https://gateway.qg1.apps.qualys.eu",
    )
    assert resolve_urls({"username": "xx", "api_server": "http://127.0.0.1:8080"}) == (
        "http://127.0.0.1:8080",
        "http://127.0.0.1:8080",
    )
    assert resolve_urls(
        {"username": "ab_cd", "api_server": "http://127.0.0.1:1", "gateway_url": "https://gw:2/x/"}
    ) == ("http://127.0.0.1:1", "https://gw:2/x")


def test_a_reverse_proxy_prefix_is_kept_and_a_pasted_api_path_refused() -> None:
    assert resolve_urls({"username": "xx", "api_server": "https://proxy.corp/qualys/"}) == (
        "https://proxy.corp/qualys",
        "https://proxy.corp/qualys",
    )
    with pytest.raises(PlatformError, match=r"^api_server: .* holds a Qualys API path"):
        resolve_urls({"username": "xx", "api_server": "https://qualysapi.qualys.com/api/2.0/fo/"})


@pytest.mark.parametrize("setting", ["api_server", "gateway_url"])
@pytest.mark.parametrize("url", ["http://qualysapi.qualys.com", "http://10.0.0.5:8080/q"])
def test_plain_http_is_refused_off_this_machine(setting: str, url: str) -> None:
    with pytest.raises(PlatformError, match=rf"^{setting}: .* is plain http"):
        resolve_urls({"username": "ab_cd", setting: url})


@pytest.mark.parametrize("url", ["http://localhost:8080", "http://127.0.0.2", "http://[::1]:9"])
def test_plain_http_is_accepted_on_loopback(url: str) -> None:
    assert resolve_urls({"username": "xx", "api_server": url}) == (url, url)


def test_no_way_to_tell_the_pod_is_an_error() -> None:
    with pytest.raises(PlatformError, match=r"^api_server: cannot tell the Qualys platform"):
        resolve_urls({"username": "abZcd"})
    with pytest.raises(PlatformError, match=r"^api_server: 'ftp://x' is not a URL"):
        resolve_urls({"username": "ab_cd", "api_server": "ftp://x"})


def test_a_pasted_url_with_credentials_never_echoes_them() -> None:
    with pytest.raises(PlatformError) as raised:
        normalize_url("api_server", "https://user:s3cret-pw@qualysguard.qualys.com/fo/")
    assert "s3cret-pw" not in str(raised.value)
    assert "qualysapi.qualys.com" in str(raised.value)
