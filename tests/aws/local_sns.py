"""A stand-in for SNS's HTTPS side, on loopback: a locally generated CA and signing certificate.

``LocalSns`` serves the signing certificate and the SubscribeURL over real HTTPS (TLS with its own
CA) and signs messages the way SNS documents it (the canonical string is built here independently of
the code under test). Tests hand the verifier a getter that trusts the local CA and a ``trusted_host``
that accepts 127.0.0.1 with a port: the only way the SNS host check is relaxed.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import ipaddress
import ssl
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from workflow_retry.aws.webhooks import RequestsHttpsGetter, SnsMessageVerifier

REGION = "eu-west-1"
TOPIC_ARN = f"arn:aws:sns:{REGION}:123456789012:workflow-failures"
OTHER_TOPIC_ARN = f"arn:aws:sns:{REGION}:123456789012:someone-elses-topic"
CERT_PATH = "/SimpleNotificationService-local.pem"
REDIRECT_PATH = "/redirect-to-certificate"
BIG_PATH = "/big.pem"
BIG_UNANNOUNCED_PATH = "/big-without-length.pem"
BIG_BYTES = 64 * 1024 + 1
SLOW_PATH = "/slow.pem"
SLOW_SECONDS = 3.0
EXACT_PATH = "/exactly-the-limit.pem"
EXACT_UNANNOUNCED_PATH = "/exactly-the-limit-without-length.pem"
LIMIT_BYTES = 64 * 1024
OVERSTATED_PATH = "/announces-more-than-the-limit.pem"
"""Announces a body over the limit, then sends nothing for :data:`SLOW_SECONDS`."""
TRICKLE_PATH = "/trickle.pem"
"""Sends the certificate a few bytes every 0.1 s: no single read waits long, the whole takes seconds."""
GZIP_PATH = "/compressed.pem"
"""Ignores ``Accept-Encoding: identity``: 1 MiB of zeros, gzip-compressed to about 1 KiB."""
EC_CERT_PATH = "/SimpleNotificationService-ec.pem"
"""A certificate signed by the local CA whose key is not RSA."""
NUMBERED_CERT_PREFIX = "/SimpleNotificationService-"
"""``/SimpleNotificationService-<n>.pem`` serves the signing certificate under as many URLs as wanted."""


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer: str,
    issuer_key: rsa.RSAPrivateKey,
    *,
    ca: bool = False,
    ip: str | None = None,
    valid_days: int = 2,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


class LocalSns:
    """Serves a signing certificate and SubscribeURLs over HTTPS on 127.0.0.1 and signs messages."""

    def __init__(self) -> None:
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ca_pem = _pem(_certificate("local test CA", ca_key, "local test CA", ca_key, ca=True))
        self._ca_file = tempfile.NamedTemporaryFile(suffix=".pem")  # noqa: SIM115 (kept open while serving)
        self._ca_file.write(self.ca_pem)
        self._ca_file.flush()
        tls_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        tls_cert = _certificate("127.0.0.1", tls_key, "local test CA", ca_key, ip="127.0.0.1")
        self.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.signing_pem = _pem(_certificate("sns.amazonaws.com", self.signing_key, "local test CA", ca_key))
        ec_key: Any = ec.generate_private_key(ec.SECP256R1())
        self.ec_pem = _pem(_certificate("sns.amazonaws.com", ec_key, "local test CA", ca_key))
        self.fetched: list[str] = []
        self.accept_encodings: list[str | None] = []
        self.confirmed_tokens: list[str] = []
        self._server = self._start(tls_cert, tls_key)

    def _start(self, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> ThreadingHTTPServer:
        local = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                local.fetched.append(self.path)
                local.accept_encodings.append(self.headers.get("Accept-Encoding"))
                if self.path == CERT_PATH:
                    self._answer(200, local.signing_pem)
                elif self.path.startswith("/confirm?Token="):
                    local.confirmed_tokens.append(self.path.split("=", 1)[1])
                    self._answer(200, b"<ConfirmSubscriptionResponse/>")
                elif self.path == REDIRECT_PATH:  # to the certificate itself: only the redirect is wrong
                    self.send_response(302)
                    self.send_header("Location", local.url(CERT_PATH))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path in (BIG_PATH, BIG_UNANNOUNCED_PATH):
                    body = b"x" * (BIG_BYTES)
                    self.send_response(200)
                    if self.path == BIG_PATH:
                        self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)  # without a length, the body ends when the connection closes
                elif self.path == SLOW_PATH:
                    time.sleep(SLOW_SECONDS)
                    self._answer(200, local.signing_pem)
                elif self.path in (EXACT_PATH, EXACT_UNANNOUNCED_PATH):
                    self.send_response(200)
                    if self.path == EXACT_PATH:
                        self.send_header("Content-Length", str(LIMIT_BYTES))
                    self.end_headers()
                    self.wfile.write(b"x" * LIMIT_BYTES)
                elif self.path == OVERSTATED_PATH:
                    self.send_response(200)
                    self.send_header("Content-Length", str(LIMIT_BYTES + 1))
                    self.end_headers()
                    self.wfile.flush()
                    time.sleep(SLOW_SECONDS)
                elif self.path == TRICKLE_PATH:
                    self.send_response(200)
                    self.end_headers()
                    try:
                        for start in range(0, len(local.signing_pem), 64):
                            self.wfile.write(local.signing_pem[start : start + 64])
                            self.wfile.flush()
                            time.sleep(0.1)
                    except (BrokenPipeError, ConnectionResetError):
                        return  # the getter gave up, as it should
                elif self.path == GZIP_PATH:
                    body = gzip.compress(b"\0" * (1024 * 1024))
                    self.send_response(200)
                    self.send_header("Content-Encoding", "gzip")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif self.path == EC_CERT_PATH:
                    self._answer(200, local.ec_pem)
                elif self.path.startswith(NUMBERED_CERT_PREFIX) and self.path.endswith(".pem"):
                    self._answer(200, local.signing_pem)
                else:
                    self._answer(404, b"not found")

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # The ssl module loads a certificate chain from files only.
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        with tempfile.NamedTemporaryFile() as cert_file, tempfile.NamedTemporaryFile() as key_file:
            cert_file.write(_pem(cert))
            key_file.write(key_pem)
            cert_file.flush()
            key_file.flush()
            context.load_cert_chain(cert_file.name, key_file.name)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return server

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._ca_file.close()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}{path}"

    def getter(self, **options: Any) -> RequestsHttpsGetter:
        """The production getter, trusting only the local CA (``options``: its timeout, size, time left)."""
        return RequestsHttpsGetter(verify=self._ca_file.name, **options)

    def verifier(self, topics: frozenset[str] = frozenset({TOPIC_ARN}), **kwargs: Any) -> SnsMessageVerifier:
        return SnsMessageVerifier(topics, self.getter(), max_age_seconds=3600, trusted_host=trust_loopback, **kwargs)

    def message(
        self,
        message: str,
        *,
        type: str = "Notification",
        topic_arn: str = TOPIC_ARN,
        version: str = "1",
        subject: str | None = "workflow failed",
        timestamp: dt.datetime | None = None,
        message_id: str | None = None,
        cert_url: str | None = None,
    ) -> dict[str, Any]:
        """A signed SNS HTTPS message (the JSON body SNS posts)."""
        when = timestamp or dt.datetime.now(dt.UTC)
        fields: dict[str, Any] = {
            "Type": type,
            "MessageId": message_id or str(uuid.uuid4()),
            "TopicArn": topic_arn,
            "Message": message,
            "Timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "SignatureVersion": version,
            "SigningCertURL": cert_url or self.url(CERT_PATH),
        }
        if type == "Notification":
            if subject is not None:
                fields["Subject"] = subject
            fields["UnsubscribeURL"] = self.url("/unsubscribe")
        else:
            token = uuid.uuid4().hex
            fields["Token"] = token
            fields["SubscribeURL"] = self.url(f"/confirm?Token={token}")
        fields["Signature"] = self.sign(fields, version)
        return fields

    def sign(self, fields: dict[str, Any], version: str = "1") -> str:
        if fields["Type"] == "Notification":
            keys = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
        else:
            keys = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
        canonical = "".join(f"{k}\n{fields[k]}\n" for k in keys if k in fields).encode()
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303
        return base64.b64encode(self.signing_key.sign(canonical, padding.PKCS1v15(), algorithm)).decode()


def trust_loopback(authority: str, region: str) -> bool:
    """The test hook: certificates and SubscribeURLs may come from the local stand-in (any port)."""
    host, _, port = authority.partition(":")
    return host == "127.0.0.1" and port.isdigit()
