"""How every Kafka client of the project connects: the bootstrap address and the cluster's
security (TLS, SASL) from the settings, and the project's one producer configuration. Every
consumer, producer and admin client is made here, so that a secured cluster needs its settings
once (docs/operations.md, "Run it on your cluster")."""

from __future__ import annotations

import contextlib
import functools
import logging
import ssl
import sys
from functools import lru_cache
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.helpers import create_ssl_context

from streams.settings import Settings

# Every producer of the project: acknowledged by all in-sync replicas, idempotent (a retried
# batch is written once), compressed (REWARDS_COMPRESSION: ledger output shrinks several times),
# in batches of up to 512 KiB, a record of up to 4 MiB. No linger: the worker hands aiokafka
# whole batches (streams.worker.kafkaio.Sender), and a lingering batch would wait 'linger_ms'
# before it is sent, every turn; `rewards publish` sets its own.
PRODUCER_OPTIONS: Final = {"acks": "all", "enable_idempotence": True, "linger_ms": 0,
                           "max_batch_size": 512 * 1024, "max_request_size": 4 * 1024 * 1024}


def security(settings: Settings) -> dict[str, Any]:
    """aiokafka's security options for the settings' KAFKA_SECURITY_PROTOCOL."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(settings.kafka_ssl_ca_file, settings.kafka_ssl_cert_file,
                                             settings.kafka_ssl_key_file, settings.kafka_ssl_key_password)
    if protocol.startswith("SASL_"):
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism, sasl_plain_username=settings.kafka_sasl_username,
                       sasl_plain_password=settings.kafka_sasl_password)
    return options


@lru_cache(maxsize=4)
def ssl_context(ca_file: str, cert_file: str, key_file: str, key_password: str) -> ssl.SSLContext:
    """The TLS context: the CA file's authorities (else the system's), and the client's
    certificate when the cluster authenticates clients by certificate (mutual TLS)."""
    if not (ca_file or cert_file):
        return ssl.create_default_context()
    context: ssl.SSLContext = create_ssl_context(cafile=ca_file or None, certfile=cert_file or None,
                                                 keyfile=key_file or None, password=key_password or None)
    return context


def connection(settings: Settings) -> dict[str, Any]:
    """The options every client takes: where the cluster is and how to authenticate to it."""
    return {"bootstrap_servers": settings.kafka_bootstrap, "client_id": settings.app_id, **security(settings)}


# lz4 in its fast mode. aiokafka compresses lz4 at level 9, lz4's high-compression mode, and has no
# option for it: 2.6 ms for a batch of 2,000 fills here, 13 % of the worker's time in a profile of
# `make bench-worker`; level 1 takes 0.12 ms for 31 % more bytes (any level reads back the same).
LZ4_LEVEL: Final = 1


@functools.cache
def fast_lz4() -> None:
    """Make aiokafka's record batch builder compress lz4 at LZ4_LEVEL: the module that defines
    the builder it uses (its C one, else the Python one) looks its encoder up by name at each batch."""
    from aiokafka import codec
    from aiokafka.record import default_records

    encode = functools.partial(codec.lz4_encode, level=LZ4_LEVEL)
    for module in {default_records, sys.modules[default_records.DefaultRecordBatchBuilder.__module__]}:
        setattr(module, "lz4_encode", encode)


def producer(settings: Settings, **options: Any) -> AIOKafkaProducer:
    """A producer with the project's settings (PRODUCER_OPTIONS, REWARDS_COMPRESSION); ``options``
    add to them (a ``transactional_id``) or override them."""
    compression = None if settings.compression == "none" else settings.compression
    if compression == "lz4":
        fast_lz4()
    return AIOKafkaProducer(**connection(settings), **{**PRODUCER_OPTIONS, "compression_type": compression,
                                                       **options})


def consumer(settings: Settings, *topics: str, **options: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(*topics, **connection(settings), **options)


def admin(settings: Settings, **options: Any) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**connection(settings), **options)


async def start(client: AIOKafkaProducer | AIOKafkaConsumer | AIOKafkaAdminClient) -> None:
    """Start ``client``; one that cannot (the cluster unreachable, credentials refused) is
    closed before the error goes on, not left for the garbage collector to warn about."""
    try:
        await client.start()
    except BaseException:
        with contextlib.suppress(Exception):
            await (client.close() if isinstance(client, AIOKafkaAdminClient) else client.stop())
        raise


class ConnectionReasons(logging.Handler):
    """aiokafka says why a connection failed only in its log ("Unable connect to ...: [Error 58]
    SaslAuthenticationFailed"); its exception says "Unable to bootstrap". This keeps the last
    reasons for ``explain``. Attached to aiokafka's logger, it also keeps those lines off a
    command's terminal (the worker's log still has them)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reasons: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.reasons = [*self.reasons[-4:], record.getMessage()]

    @classmethod
    def attach(cls) -> ConnectionReasons:
        handler = cls()
        logging.getLogger("aiokafka").addHandler(handler)
        return handler


class NotAllowed(Exception):
    """Kafka refused an operation for want of an ACL: one sentence naming the operation, the
    resource and the principal (docs/operations.md, "Run it on your cluster", lists the grants). Neither a
    retry nor a restart helps: the worker and the commands stop with it, exit 2."""

    def __init__(self, settings: Settings, operation: str, resource: str, doing: str = "") -> None:
        self.operation, self.resource = operation, resource
        where = f"Kafka at {settings.kafka_bootstrap} (KAFKA_BOOTSTRAP_SERVERS)"
        super().__init__(f"{doing}{where} refused {operation} on {resource} to {principal(settings)}: grant it (docs/operations.md, "
                         "\"Run it on your cluster\", lists every ACL)")


# What each of Kafka's authorization errors refused, where the call site did not say more.
_REFUSED: Final = {"TopicAuthorizationFailedError": ("Read, Write or Describe", "topic"),
                   "GroupAuthorizationFailedError": ("Read or Describe", "group"),
                   "TransactionalIdAuthorizationFailed": ("Write or Describe", "transactional id"),
                   "ClusterAuthorizationFailedError": ("an operation", "the cluster")}


def principal(settings: Settings) -> str:
    """Who the brokers take this client for."""
    protocol = settings.kafka_security_protocol
    if protocol.startswith("SASL_"):
        return f"User:{settings.kafka_sasl_username}"
    if protocol == "SSL" and settings.kafka_ssl_cert_file:
        return "the principal of the certificate in KAFKA_SSL_CERT_FILE"
    return "User:ANONYMOUS"


def not_allowed(exc: BaseException | None, settings: Settings) -> NotAllowed | None:
    """The missing grant behind ``exc`` (through its causes), or None when it is something else."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, NotAllowed):
            return exc
        refused = _REFUSED.get(type(exc).__name__)
        if refused is not None:
            names = ", ".join(sorted(str(arg) for arg in exc.args if isinstance(arg, str | set | frozenset) and arg))
            return NotAllowed(settings, refused[0], f"{refused[1]} {names}".strip())
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def explain(exc: BaseException, settings: Settings, reasons: list[str]) -> str:
    """A Kafka failure as one sentence naming the settings to check."""
    text = " ".join([*reasons, type(exc).__name__, str(exc)])
    where = f"Kafka at {settings.kafka_bootstrap} (KAFKA_BOOTSTRAP_SERVERS)"
    protocol = settings.kafka_security_protocol
    refused = not_allowed(exc, settings)
    if refused is not None:
        return str(refused)
    if "SaslAuthenticationFailed" in text or "Authentication failed" in text:
        return (f"{where} refused the credentials: check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD "
                f"(KAFKA_SASL_MECHANISM={settings.kafka_sasl_mechanism})")
    if "UnsupportedSaslMechanism" in text:
        return f"{where} does not take KAFKA_SASL_MECHANISM={settings.kafka_sasl_mechanism}: {reasons[-1] if reasons else exc}"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return (f"could not verify the TLS certificate of {where}: set KAFKA_SSL_CA_FILE to the authority that "
                "signed the brokers' certificates")
    if any(sign in text.upper() for sign in ("CERTIFICATE_REQUIRED", "BAD_CERTIFICATE", "UNKNOWN_CA")):
        return (f"{where} refused this client's certificate: set KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE to a "
                "certificate signed by an authority the brokers trust")
    if "SSL" in text and protocol in ("SSL", "SASL_SSL"):
        return (f"TLS with {where} failed (KAFKA_SECURITY_PROTOCOL={protocol}: is that listener TLS?): "
                f"{reasons[-1] if reasons else exc}")
    if any(sign in text for sign in ("Connect call failed", "Errno", "Name or service not known", "nodename")):
        return f"cannot reach {where}: check the address and that the brokers are up"
    reason = next((r for r in reversed(reasons) if not r.rstrip().endswith(":")), str(exc))
    if "bootstrap" in str(exc):  # connected, then dropped: the listener speaks another protocol
        certificate = ("; or that it does not require a client certificate (KAFKA_SSL_CERT_FILE, KAFKA_SSL_KEY_FILE)"
                       if protocol in ("SSL", "SASL_SSL") and not settings.kafka_ssl_cert_file else "")
        return (f"cannot connect to {where} with KAFKA_SECURITY_PROTOCOL={protocol}: check that this listener "
                f"speaks {protocol}{certificate} (a SASL or TLS listener drops other clients; {reason})")
    return f"{where}: {type(exc).__name__}: {exc}"
