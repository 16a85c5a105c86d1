"""TLS on the gateway's gRPC and HTTP ports from certificate files, with a CA made for the test."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.integration.http_support import Api, api_gateway
from toolfabric import Client, Unavailable
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric.v1 import fabric_pb2_grpc as pb_grpc
from toolfabric_server.devstack.processes import free_port, wait_until
from toolfabric_server.devstack.stack import EmbeddedStack

pytestmark = pytest.mark.integration


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path
    health_port: int = 0  # the gateway's plaintext health-only port


SERVING = health_pb2.HealthCheckResponse.SERVING


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_pki(directory: Path, ca_name: str = "toolfabric test CA") -> Pki:
    """A self-signed CA and a server certificate it signed for 127.0.0.1 and localhost."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name(ca_name)).issuer_name(_name(ca_name))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("gateway")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pki = Pki(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return pki


@pytest.fixture(scope="module")
def tls_gateway(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, Pki]]:
    workdir = tmp_path_factory.mktemp("tls")
    pki = make_pki(workdir)
    pki.health_port = free_port()
    with api_gateway(stack, workdir, TOOLFABRIC_TLS_CERT_FILE=str(pki.cert), TOOLFABRIC_TLS_KEY_FILE=str(pki.key),
                     TOOLFABRIC_TLS_HEALTH_PORT=str(pki.health_port)) as api:
        yield api, pki


def test_probes_get_plaintext_health_on_the_health_port_only(tls_gateway: tuple[Api, Pki]) -> None:
    _, pki = tls_gateway
    with grpc.insecure_channel(f"127.0.0.1:{pki.health_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status == SERVING

        def fabric_serving() -> bool:  # set by the readiness watcher once Redis and the model answer
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(service="toolfabric.v1.Fabric"), timeout=5)
            except grpc.RpcError:
                return False
            return bool(reply.status == SERVING)

        wait_until(fabric_serving, 30, "Fabric service SERVING on the health port")
        with pytest.raises(grpc.RpcError) as info:  # the Fabric API itself is not on the plaintext port
            pb_grpc.FabricStub(channel).ListTools(pb.ListToolsRequest(), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_grpc_over_tls_with_the_ca_works_and_plaintext_does_not(tls_gateway: tuple[Api, Pki]) -> None:
    api, pki = tls_gateway
    with Client(api.target, timeout_s=30, root_certificates=pki.ca.read_bytes()) as client:
        assert any(t.name == "code" for t in client.tools())
    with Client(api.target, timeout_s=5) as plaintext, pytest.raises(Unavailable):
        plaintext.tools()


def test_grpc_refuses_a_server_certificate_from_another_ca(tls_gateway: tuple[Api, Pki], tmp_path: Path) -> None:
    api, _ = tls_gateway
    stranger = make_pki(tmp_path, "some other CA")
    with Client(api.target, timeout_s=5, root_certificates=stranger.ca.read_bytes()) as client, \
            pytest.raises(Unavailable):
        client.tools()


def test_http_api_over_tls(tls_gateway: tuple[Api, Pki]) -> None:
    api, pki = tls_gateway
    https = api.url.replace("http://", "https://")
    assert requests.get(f"{https}/healthz", verify=str(pki.ca), timeout=10).json() == {"status": "ok"}
    models = requests.get(f"{https}/v1/models", verify=str(pki.ca), timeout=10).json()
    assert "skywork/r1v4-lite" in {m["id"] for m in models["data"]}
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{https}/healthz", timeout=10)  # the system roots do not know the test CA
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{api.url}/healthz", timeout=10)  # no plaintext on a TLS port
