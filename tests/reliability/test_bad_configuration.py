"""Scenario 5: every common misconfiguration ends in one line that says what to fix.

Includes TLS: a simulator with a self-signed certificate must fail with a pointer to the
`ca_bundle` setting, and succeed once `ca_bundle` names that certificate.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from qualys_simulator.testing import SimulatorProcess
from tests.reliability.errors import assert_one_clear_line, has_traceback
from tests.reliability.harness import SMALL_WORLD, Pipeline, simulator

WRONG_PASSWORD = "Wr0ng-Pa55word-PLUGH"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with simulator(**SMALL_WORLD) as running:
        yield running


#: requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's CA bundle in some
#: calls; many CI images and corporate machines set them. Tests pick either world explicitly.
NO_CA_ENV = {"REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": ""}
SYSTEM_CA_ENV = {"REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
                 "CURL_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"}


def failed_run(sim: SimulatorProcess, tmp_path: Path, *, streams: tuple[str, ...] = ("hosts",),
               env: dict[str, str] | None = None, **config: Any) -> Any:
    pipeline = Pipeline(sim, tmp_path, max_retries=2)
    return pipeline.run(config=pipeline.config(**config), streams=streams, timeout=180,
                        env=env)


@pytest.mark.parametrize(("streams", "stream_name"), [
    (("hosts",), "hosts"), (("knowledge_base",), "knowledge_base"),
    (("csam_assets",), "csam_assets"), (("pcrs_policies",), "pcrs_policies"),
])
def test_wrong_password(sim: SimulatorProcess, tmp_path: Path, streams: tuple[str, ...],
                        stream_name: str) -> None:
    result = failed_run(sim, tmp_path, streams=streams, password=WRONG_PASSWORD)
    line = assert_one_clear_line(result, names=("password",))
    assert WRONG_PASSWORD not in result.tap_stderr
    # A wrong password is not retried: it cannot get better.
    assert sim.stats()["responses"], line


def test_web_ui_address_instead_of_the_api_server(sim: SimulatorProcess, tmp_path: Path) -> None:
    result = failed_run(sim, tmp_path, api_server="https://qualysguard.qg2.apps.qualys.com")
    assert_one_clear_line(result, names=("api_server", "qualysapi.qg2.apps.qualys.com"))


def test_unknown_platform(sim: SimulatorProcess, tmp_path: Path) -> None:
    result = failed_run(sim, tmp_path, platform="US_99", api_server=None, gateway_url=None)
    assert_one_clear_line(result, names=("platform", "US_99"), says=("US_01",))


@pytest.mark.parametrize("start_date", ["2025-13-45", "last tuesday", "31/01/2025"])
def test_malformed_start_date(sim: SimulatorProcess, tmp_path: Path, start_date: str) -> None:
    result = failed_run(sim, tmp_path, start_date=start_date)
    assert_one_clear_line(result, names=("start_date",), says=(start_date,))


@pytest.mark.parametrize("setting", ["host_batch_size", "truncation_limit", "max_retries",
                                     "csam_page_size", "pcrs_batch_size"])
def test_negative_sizes(sim: SimulatorProcess, tmp_path: Path, setting: str) -> None:
    negative: dict[str, Any] = {setting: -5}
    result = failed_run(sim, tmp_path, **negative)
    assert_one_clear_line(result, names=(setting,))


def test_configuration_errors_print_no_traceback(sim: SimulatorProcess, tmp_path: Path) -> None:
    result = failed_run(sim, tmp_path, start_date="last tuesday")
    assert not has_traceback(result), result.describe()


# --- TLS ------------------------------------------------------------------------------------


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by itself: no system CA trusts it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qualys-simulator test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address(
                                                        "127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SimulatorProcess, Path]]:
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    with simulator(**SMALL_WORLD, tls_cert=cert, tls_key=key) as running:
        assert running.url.startswith("https://"), running.url
        yield running, cert


@pytest.mark.parametrize("stream", ["hosts", "csam_assets"])
def test_untrusted_certificate_points_at_ca_bundle(tls_sim: tuple[SimulatorProcess, Path],
                                                   tmp_path: Path, stream: str) -> None:
    sim, _ = tls_sim
    result = failed_run(sim, tmp_path, streams=(stream,), env=NO_CA_ENV)
    assert_one_clear_line(result, names=("ca_bundle",), says=("certificate", "TLS", "SSL"))


def test_untrusted_certificate_is_not_retried(tls_sim: tuple[SimulatorProcess, Path],
                                              tmp_path: Path) -> None:
    """Verification fails the same way every time: retrying only delays the message."""
    sim, _ = tls_sim
    result = failed_run(sim, tmp_path, streams=("hosts",), env=NO_CA_ENV)
    retries = [line for line in result.log(("WARNING",)) if "retry" in line]
    assert not retries, f"a certificate failure was retried: {retries[:2]}"


@pytest.mark.parametrize("env", [NO_CA_ENV, SYSTEM_CA_ENV], ids=["plain", "REQUESTS_CA_BUNDLE"])
def test_ca_bundle_makes_the_same_server_work(tls_sim: tuple[SimulatorProcess, Path],
                                              tmp_path: Path, env: dict[str, str]) -> None:
    sim, cert = tls_sim
    streams = ("hosts", "host_detections", "csam_assets")
    pipeline = Pipeline(sim, tmp_path, ca_bundle=str(cert), max_retries=2)
    result = pipeline.sync(streams=streams, env=env, timeout=180)
    pipeline.assert_ground_truth(streams, context=result.describe())
