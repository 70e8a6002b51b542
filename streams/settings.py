"""The one settings object: every knob of the worker, from environment variables, each with a
documented default, validated at start-up (docs/operations.md, "Configuration")."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields, replace
from typing import Any

ENV_PREFIX = "REWARDS_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_NAME = re.compile(r"[A-Za-z0-9._-]{1,200}")  # room for the suffixes of the topics it names


def _env_name(f: Field[Any]) -> str:
    return str(f.metadata.get("env", ENV_PREFIX + f.name.upper()))


class SettingsError(ValueError):
    pass


def _read_secret(variable: str, path: str) -> str:
    """A secret from the file ``variable`` names (a mounted Kubernetes Secret), without the
    line end an editor leaves."""
    try:
        with open(path, encoding="utf-8") as file:
            return file.read().rstrip("\r\n")
    except OSError as exc:
        raise SettingsError(f"{variable}: cannot read {path!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{variable}: {path!r} is not UTF-8 text") from None


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = field(default="localhost:9092", metadata={
        "env": "KAFKA_BOOTSTRAP_SERVERS", "doc": "Kafka bootstrap servers, host:port[,host:port]"})
    kafka_security_protocol: str = field(default="PLAINTEXT", metadata={
        "env": "KAFKA_SECURITY_PROTOCOL", "doc": "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL: how every Kafka client "
        "of the worker and the commands connects"})
    kafka_sasl_mechanism: str = field(default="PLAIN", metadata={
        "env": "KAFKA_SASL_MECHANISM", "doc": "with SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"})
    kafka_sasl_username: str = field(default="", repr=False, metadata={
        "env": "KAFKA_SASL_USERNAME", "secret": True, "doc": "with SASL_*: the user (or KAFKA_SASL_USERNAME_FILE: "
        "a file holding it, such as a mounted Kubernetes Secret)"})
    kafka_sasl_password: str = field(default="", repr=False, metadata={
        "env": "KAFKA_SASL_PASSWORD", "secret": True, "doc": "with SASL_*: the password (or KAFKA_SASL_PASSWORD_FILE)"})
    kafka_ssl_ca_file: str = field(default="", metadata={
        "env": "KAFKA_SSL_CA_FILE", "doc": "with SSL or SASL_SSL: PEM file of the authorities that signed the brokers' "
        "certificates; empty: the system's"})
    kafka_ssl_cert_file: str = field(default="", metadata={
        "env": "KAFKA_SSL_CERT_FILE", "doc": "with SSL: PEM client certificate, when the cluster authenticates "
        "clients by certificate (mutual TLS)"})
    kafka_ssl_key_file: str = field(default="", metadata={
        "env": "KAFKA_SSL_KEY_FILE", "doc": "with KAFKA_SSL_CERT_FILE: its PEM private key"})
    kafka_ssl_key_password: str = field(default="", repr=False, metadata={
        "env": "KAFKA_SSL_KEY_PASSWORD", "secret": True, "doc": "the private key's password, if it has one "
        "(or KAFKA_SSL_KEY_PASSWORD_FILE)"})
    compression: str = field(default="lz4", metadata={
        "doc": "compression of everything the worker produces: none, gzip, snappy, lz4 (its fast mode, level 1) or zstd"})
    redis_url: str = field(default="redis://localhost:6379/0", metadata={
        "env": "REDIS_URL", "doc": "Redis for the read model and the client-area API"})
    app_id: str = field(default="rewards", metadata={
        "doc": "the application's name: its consumer groups are <app>-sequencer, <app>-ledger, <app>-identity "
               "and <app>-commissions, and it prefixes the internal topics and changelogs"})
    topic_clients: str = field(default="broker.clients", metadata={
        "doc": "input: client.registered, client.verified, account.opened, account.validated, partner.linked"})
    topic_trades: str = field(default="broker.trades", metadata={"doc": "input: trade.fill, trade.bust"})
    topic_payments: str = field(default="broker.payments", metadata={"doc": "input: deposit"})
    topic_commands: str = field(default="clientarea.commands", metadata={
        "doc": "input: wallet.allocate, welcome.claim, welcome.transfer"})
    topic_partners: str = field(default="partners.plans", metadata={"doc": "input: partner.plan, partner.parent (broadcast)"})
    topic_settlement: str = field(default="settlement.days", metadata={
        "doc": "input: settlement.day_closed (broadcast)"})
    topic_programs: str = field(default="programs.terms", metadata={
        "doc": "input: program.terms, the versions of the program terms (broadcast; one partition)"})
    topic_ledger: str = field(default="rewards.ledger", metadata={"doc": "output: every ledger event"})
    topic_deadletter: str = field(default="rewards.deadletter", metadata={
        "doc": "output: event.rejected, with the raw input and its topic/partition/offset"})
    partitions: int = field(default=8, metadata={
        "doc": "partitions of the internal topics and changelogs (fixed once data exists)"})
    replication: int = field(default=1, metadata={"doc": "replication factor of topics the worker creates"})
    min_insync_replicas: int = field(default=0, metadata={
        "doc": "min.insync.replicas of topics the worker creates; 0: the replication factor minus one, at least 1"})
    retention_ms: int = field(default=-1, metadata={
        "doc": "retention.ms of the topics that keep the history: the sequenced log (what `rewards replay "
               "--from-kafka` replays), the ledger and the dead-letter topic; -1 keeps it all"})
    changelog_segment_ms: int = field(default=3_600_000, metadata={
        "doc": "segment.ms and max.compaction.lag.ms of the state changelogs: how long a superseded state "
               "record or tombstone may wait for compaction, so that a recovery reads little more than live state; "
               "tombstones are kept 24 times as long (delete.retention.ms)"})
    topic_check: str = field(default="strict", metadata={
        "doc": "strict: the worker stops when a topic it uses exists with other partitions or settings than "
               "its contract (the message names the topic and the difference); warn: it logs them and starts"})
    rules_file: str = field(default="", metadata={"doc": "rules file (TOML) overriding the defaults"})
    web_host: str = field(default="0.0.0.0", metadata={"doc": "bind address of the web server (API, /metrics)"})
    web_port: int = field(default=6066, metadata={"doc": "port of the web server"})
    batch_max: int = field(default=8000, metadata={
        "doc": "most records a processor (sequencer, ledger, identity registry, commission book) takes per batch"})
    batch_within_ms: int = field(default=50, metadata={"doc": "longest wait to fill a batch"})
    order_grace_ms: int = field(default=3000, metadata={
        "doc": "how long the sequencer holds an input for the other source topics' earlier events "
               "(wall time: the most a source may lag the others and still be merged in ts order; a broker's "
               "controlled shutdown holds its partitions' writes about 2.3 s, unseen by consumers)"})
    failover_settle_ms: int = field(default=3000, metadata={
        "doc": "after a source partition's leader changes (a broker failed or restarted), how long the sequencer "
               "waits from the new leader's first answer for the source systems' producers to send what they "
               "held (they find the new leader a moment later: a Java producer retries within 1 s), before it "
               "takes that source as heard from again"})
    source_wait_max_s: int = field(default=300, metadata={
        "doc": "the longest the sequencer waits for a source partition whose leader does not answer before it "
               "merges on without it (logged, counted in rewards_source_waits_given_up; what that source held "
               "comes later and is taken as a late input)"})
    park_window_s: int = field(default=-1, metadata={
        "doc": "event-time seconds an input waits for its prerequisite before its usual refusal; "
               "-1: the rules file's `[parking] window_seconds` (600), 0: no parking"})
    max_input_bytes: int = field(default=65536, metadata={
        "doc": "the largest input the worker carries; a larger one is dead-lettered `too_large` (with its size, "
               "its first 4,096 bytes and a hash) instead of copied into the sequenced log"})
    session_timeout_ms: int = field(default=10_000, metadata={
        "doc": "how long a worker that stopped answering (killed, paused, cut off) keeps its partitions before "
               "another takes them over and fences it; heartbeats every third of it"})
    data_dir: str = field(default=".rewards-data", metadata={"doc": "the Faust shell's local data folder (no state the worker depends on)"})
    log_level: str = field(default="INFO", metadata={
        "doc": "level of the worker's own log lines (start-up, ready, recoveries, fencing); its libraries log "
               "warnings and worse, everything at DEBUG"})
    log_format: str = field(default="text", metadata={
        "doc": "text: one plain line per record (no colours); json: one JSON object per line (ts, level, logger, "
               "message, pid, exception)"})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = _env_name(f)
            if f.metadata.get("secret") and env.get(name + "_FILE"):
                values[f.name] = _read_secret(name + "_FILE", env[name + "_FILE"])
            elif name in env:
                raw = env[name]
                if f.type in ("int", int):
                    try:
                        values[f.name] = int(raw)
                    except ValueError:
                        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
                else:
                    values[f.name] = raw
        settings = replace(cls(**values), **overrides)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.partitions < 1 or self.partitions > 1024:
            raise SettingsError(f"REWARDS_PARTITIONS must be between 1 and 1024, got {self.partitions}")
        if self.replication < 1:
            raise SettingsError("REWARDS_REPLICATION must be at least 1")
        if not 0 <= self.min_insync_replicas <= self.replication:
            raise SettingsError(f"REWARDS_MIN_INSYNC_REPLICAS must be between 0 (derived) and REWARDS_REPLICATION "
                                f"({self.replication}), got {self.min_insync_replicas}")
        if self.retention_ms != -1 and self.retention_ms < 3_600_000:
            raise SettingsError("REWARDS_RETENTION_MS must be -1 (keep everything) or at least 3600000 (an hour)")
        if self.changelog_segment_ms < 100:
            raise SettingsError("REWARDS_CHANGELOG_SEGMENT_MS must be at least 100")
        if self.topic_check not in ("strict", "warn"):
            raise SettingsError(f"REWARDS_TOPIC_CHECK must be strict or warn, got {self.topic_check!r}")
        if self.order_grace_ms < 0 or self.order_grace_ms > 600_000:
            raise SettingsError("REWARDS_ORDER_GRACE_MS must be between 0 and 600000")
        if not 0 <= self.failover_settle_ms <= 600_000:
            raise SettingsError(f"REWARDS_FAILOVER_SETTLE_MS must be between 0 and 600000, got {self.failover_settle_ms}")
        if not 10 <= self.source_wait_max_s <= 86_400:
            raise SettingsError(f"REWARDS_SOURCE_WAIT_MAX_S must be between 10 and 86400 (a day), "
                                f"got {self.source_wait_max_s}")
        if not 1024 <= self.max_input_bytes <= 900_000:
            raise SettingsError("REWARDS_MAX_INPUT_BYTES must be between 1024 and 900000 (the internal topics "
                                "carry at most Kafka's default 1 MB per record, headers included)")
        if not 6_000 <= self.session_timeout_ms <= 300_000:
            raise SettingsError("REWARDS_SESSION_TIMEOUT_MS must be between 6000 and 300000 (the broker's "
                                "group.min.session.timeout.ms is 6000 by default)")
        if self.park_window_s < -1:
            raise SettingsError("REWARDS_PARK_WINDOW_S must be -1 (the rules file's), 0 (off) or positive")
        if self.batch_max < 1 or self.batch_within_ms < 1:
            raise SettingsError("REWARDS_BATCH_MAX and REWARDS_BATCH_WITHIN_MS must be positive")
        if not self.kafka_bootstrap:
            raise SettingsError("KAFKA_BOOTSTRAP_SERVERS is empty")
        if not 1 <= self.web_port <= 65535:
            raise SettingsError(f"REWARDS_WEB_PORT must be a port number, 1 to 65535, got {self.web_port}")
        if self.log_level.upper() not in LOG_LEVELS:
            raise SettingsError(f"REWARDS_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        if self.compression not in COMPRESSIONS:
            raise SettingsError(f"REWARDS_COMPRESSION must be one of {', '.join(COMPRESSIONS)}, got {self.compression!r}")
        if self.log_format not in ("text", "json"):
            raise SettingsError(f"REWARDS_LOG_FORMAT must be text or json, got {self.log_format!r}")
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError(f"REDIS_URL must start with redis://, rediss:// or unix://, got {self.redis_url!r}")
        if not _NAME.fullmatch(self.app_id):
            raise SettingsError(f"REWARDS_APP_ID must be 1 to 200 of the characters a Kafka topic name allows "
                                f"(letters, digits, '.', '_', '-'), got {self.app_id!r}: it names topics and groups")
        for f in fields(self):
            if f.name.startswith("topic_") and f.name != "topic_check" and not _TOPIC.fullmatch(getattr(self, f.name)):
                raise SettingsError(f"{_env_name(f)} must be a Kafka topic name (1 to 249 letters, digits, '.', "
                                    f"'_' or '-'), got {getattr(self, f.name)!r}")
        self._validate_security()
        inputs = self.input_topics
        if len(set(inputs)) != len(inputs):
            raise SettingsError("the input topics must be six different topics")

    def _validate_security(self) -> None:
        protocol = self.kafka_security_protocol
        if protocol not in SECURITY_PROTOCOLS:
            raise SettingsError(f"KAFKA_SECURITY_PROTOCOL must be one of {', '.join(SECURITY_PROTOCOLS)}, got {protocol!r}")
        if protocol.startswith("SASL_"):
            if self.kafka_sasl_mechanism not in SASL_MECHANISMS:
                raise SettingsError(f"KAFKA_SASL_MECHANISM must be one of {', '.join(SASL_MECHANISMS)}, "
                                    f"got {self.kafka_sasl_mechanism!r}")
            if not (self.kafka_sasl_username and self.kafka_sasl_password):
                raise SettingsError(f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and "
                                    "KAFKA_SASL_PASSWORD (or their _FILE variants)")
        elif self.kafka_sasl_username or self.kafka_sasl_password:
            raise SettingsError(f"KAFKA_SASL_USERNAME/PASSWORD are set but KAFKA_SECURITY_PROTOCOL is {protocol}: "
                                "set it to SASL_SSL (or SASL_PLAINTEXT) to use them")
        files = {"KAFKA_SSL_CA_FILE": self.kafka_ssl_ca_file, "KAFKA_SSL_CERT_FILE": self.kafka_ssl_cert_file,
                 "KAFKA_SSL_KEY_FILE": self.kafka_ssl_key_file}
        given = [variable for variable, path in files.items() if path]
        if given and protocol not in ("SSL", "SASL_SSL"):
            raise SettingsError(f"{', '.join(given)} set but KAFKA_SECURITY_PROTOCOL is {protocol}: set it to SSL "
                                "or SASL_SSL to use them")
        if bool(self.kafka_ssl_cert_file) != bool(self.kafka_ssl_key_file):
            raise SettingsError("KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE go together: set both or neither")
        for variable in given:
            if not os.access(files[variable], os.R_OK):
                raise SettingsError(f"{variable}: cannot read {files[variable]!r}")

    @property
    def min_isr(self) -> int:
        """min.insync.replicas of the topics the worker creates."""
        return self.min_insync_replicas or max(1, self.replication - 1)

    # -- derived names ------------------------------------------------------------------------
    @property
    def group(self) -> str:
        return self.app_id

    @property
    def ledger_group(self) -> str:
        """The ledger's own consumer group, on the sequenced log (streams.worker.ledgerloop)."""
        return f"{self.app_id}-ledger"

    @property
    def sequencer_group(self) -> str:
        """The sequencer's own consumer group, on the input topics (streams.worker.sequencer)."""
        return f"{self.app_id}-sequencer"

    @property
    def identity_group(self) -> str:
        """The identity registry's own consumer group, on the identity topic (streams.worker.registryloop)."""
        return f"{self.app_id}-identity"

    @property
    def commission_group(self) -> str:
        """The commission book's own consumer group, on the commission topic (streams.worker.commissionloop)."""
        return f"{self.app_id}-commissions"

    @property
    def commissions_changelog(self) -> str:
        """The commission book's state, compacted (streams.worker.commissions)."""
        return f"{self.app_id}-commissions-changelog"

    @property
    def identities_changelog(self) -> str:
        """The identity registry's state, compacted (the Faust table of earlier versions wrote it)."""
        return f"{self.app_id}-identities-changelog"

    @property
    def state_changelog(self) -> str:
        """The ledger's state, compacted: written and recovered by streams.worker.ledgerloop."""
        return f"{self.app_id}-state-changelog"

    @property
    def client_topics(self) -> tuple[str, ...]:
        return (self.topic_clients, self.topic_trades, self.topic_payments, self.topic_commands)

    @property
    def broadcast_topics(self) -> tuple[str, ...]:
        return (self.topic_partners, self.topic_settlement, self.topic_programs)

    @property
    def input_topics(self) -> tuple[str, ...]:
        return self.client_topics + self.broadcast_topics

    @property
    def leader_topic(self) -> str:
        """Faust's own, made by the shell (one partition): nothing the worker's results depend on."""
        return f"{self.app_id}-__assignor-__leader"

    @property
    def sequenced_topic(self) -> str:
        """The recorded order: every client's inputs, one log (shared by replays)."""
        return f"{self.app_id}.sequenced"

    @property
    def identity_topic(self) -> str:
        return f"{self.group}.identity"

    @property
    def commission_topic(self) -> str:
        return f"{self.group}.commissions"

    @property
    def terms_acks_topic(self) -> str:
        """The sequencer tasks' word on each version of the terms they record (one partition)."""
        return f"{self.group}.terms-acks"

    @property
    def ledger_topic(self) -> str:
        return self.topic_ledger

    @property
    def deadletter_topic(self) -> str:
        return self.topic_deadletter

    @property
    def redis_prefix(self) -> str:
        """Keys of the read model; `rewards replay --from-kafka --to-redis` writes beside them
        under ``rewards:<namespace>:``."""
        return f"{self.app_id}:"

    @classmethod
    def documentation(cls) -> list[tuple[str, str, str]]:
        """(variable, default, meaning) for docs/operations.md."""
        return [(_env_name(f), repr(f.default), f.metadata["doc"]) for f in fields(cls)]

    def as_env(self) -> dict[str, str]:
        """These settings as the environment variables that give them (for a worker started as
        a child process)."""
        return {_env_name(f): str(getattr(self, f.name)) for f in fields(self)}
