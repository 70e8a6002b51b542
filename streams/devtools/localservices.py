"""A real Kafka broker and a real Redis for tests and the demo, wherever the machine allows.

Which one is used, first match wins:

1. ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` are set: those services, as they are.
2. A Docker engine answers a ping: testcontainers (``apache/kafka``, ``redis``).
3. Otherwise, on this machine: Apache Kafka from the official jars on Maven Central (resolved
   once by Maven into the cache folder, then run as a single-node KRaft broker on free ports),
   and Debian's ``redis-server`` (installed with apt-get when missing).

    python -m streams.devtools.localservices        # start both, print their addresses, run until Ctrl-C
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

LOCAL_DIR: Final = Path(__file__).resolve().parents[2] / "deploy" / "local"
CACHE_DIR: Final = Path(os.environ.get("REWARDS_CACHE_DIR", Path.home() / ".cache" / "rewards"))
KAFKA_START_TIMEOUT_S: Final = 120.0
REDIS_START_TIMEOUT_S: Final = 20.0
KAFKA_IMAGE: Final = "apache/kafka:4.1.1"
REDIS_IMAGE: Final = "redis:7.4-alpine"


class ServiceError(RuntimeError):
    """A service could not be provided; the message says what to do."""


@dataclass(frozen=True)
class Services:
    kafka_bootstrap: str
    redis_url: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def docker_available() -> bool:
    """A Docker engine that answers, not just a docker client on the PATH."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:
        return False


# -- Kafka -------------------------------------------------------------------------------------
def kafka_jars() -> Path:
    """The broker's jars, resolved from Maven Central once and cached."""
    pom = LOCAL_DIR / "pom.xml"
    folder = CACHE_DIR / "kafka-jars" / _digest(pom.read_bytes())
    marker = folder / ".complete"
    if marker.exists():
        return folder
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise ServiceError("Kafka needs Java 17+ and Maven to fetch the broker jars "
                           "(or set KAFKA_BOOTSTRAP_SERVERS, or run a Docker engine)")
    folder.mkdir(parents=True, exist_ok=True)
    command = ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
               "-DincludeScope=runtime", f"-DoutputDirectory={folder}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise ServiceError(f"mvn could not resolve the Kafka jars:\n{result.stdout[-4000:]}{result.stderr[-4000:]}")
    marker.touch()
    return folder


def _digest(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()[:12]


# The user a secured LocalKafka knows, by every SASL mechanism the worker offers.
SASL_USER: Final = ("rewards", "rewards-secret")
SASL_MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class LocalKafka:
    """A single-node KRaft broker on loopback ports fixed when it is made, with its data in
    ``folder``: it can be stopped and started again on the same data and address (the fault
    tests restart it mid-run).

    ``secured``: three more listeners, as a broker's cluster has them: SASL_PLAINTEXT
    (``sasl_bootstrap``) and SASL_SSL (``sasl_ssl_bootstrap``, with a certificate from a CA made
    here, ``ca_file``), both taking SASL_USER by PLAIN and SCRAM; and SSL with client
    certificates required (``ssl_bootstrap``; ``client_cert`` and ``client_key`` are signed by
    the same CA). ``users``: more SASL users (name: password). ``authorizer``: the standard
    authorizer, nothing allowed without an ACL but to the PLAINTEXT listener's clients (the
    nodes themselves, and the admin that grants ACLs: ``acls``).

    ``node_id``, ``cluster_id``, ``controller_port``, ``voters`` and ``replication`` make it one
    node of a cluster (``LocalKafkaCluster``)."""

    def __init__(self, folder: Path, secured: bool = False, *, node_id: int = 1, cluster_id: str | None = None,
                 controller_port: int | None = None, voters: str | None = None, replication: int = 1,
                 users: dict[str, str] | None = None, authorizer: bool = False) -> None:
        self.folder = folder
        self.node_id = node_id
        self.broker_port, self.controller_port = free_port(), controller_port or free_port()
        self.bootstrap = f"127.0.0.1:{self.broker_port}"
        voters = voters or f"{node_id}@127.0.0.1:{self.controller_port}"
        min_isr = min(2, replication)
        listeners = [f"PLAINTEXT://127.0.0.1:{self.broker_port}"]
        protocols = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
        security: list[str] = []
        scram: list[str] = []
        if secured:
            self.sasl_bootstrap, self.sasl_ssl_bootstrap = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
            self.ssl_bootstrap = f"127.0.0.1:{free_port()}"
            self.ca_file = folder / "ca.pem"
            self.client_cert, self.client_key = folder / "client.crt", folder / "client.key"
            listeners += [f"SASL_PLAINTEXT://{self.sasl_bootstrap}", f"SASL_SSL://{self.sasl_ssl_bootstrap}",
                          f"SSL://{self.ssl_bootstrap}"]
            protocols += ["SASL_PLAINTEXT:SASL_PLAINTEXT", "SASL_SSL:SASL_SSL", "SSL:SSL"]
            known = {SASL_USER[0]: SASL_USER[1], **(users or {})}
            security = _sasl_properties(folder, known)
            for user, password in known.items():
                for mechanism in SASL_MECHANISMS[1:]:
                    scram += ["--add-scram", f"{mechanism}=[name={user},password={password}]"]
            if authorizer:  # as a secured cluster runs: nothing allowed without an ACL
                # ANONYMOUS: the PLAINTEXT listener, which the nodes (and a test's admin) use
                security += ["authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                             "allow.everyone.if.no.acl.found=false", "super.users=User:ANONYMOUS"]
        self.properties = folder / "server.properties"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.java = ["java", "-Xms256m", "-Xmx512m", f"-Dlog4j2.configurationFile={LOCAL_DIR / 'log4j2.properties'}",
                     "-cp", f"{kafka_jars()}/*"]
        self.properties.write_text("\n".join([
            "process.roles=broker,controller",
            f"node.id={node_id}",
            f"controller.quorum.voters={voters}",
            f"listeners={','.join(listeners)},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners={','.join(listeners)}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            f"listener.security.protocol.map={','.join(protocols)}",
            *security,
            f"log.dirs={folder / 'data'}",
            "num.partitions=1",
            f"default.replication.factor={replication}",
            f"min.insync.replicas={min_isr}",
            f"offsets.topic.replication.factor={replication}",
            "offsets.topic.num.partitions=4",
            f"transaction.state.log.replication.factor={replication}",
            f"transaction.state.log.min.isr={min_isr}",
            f"share.coordinator.state.topic.replication.factor={replication}",
            f"share.coordinator.state.topic.min.isr={min_isr}",
            "unclean.leader.election.enable=false",
            "num.replica.fetchers=1",
            "group.initial.rebalance.delay.ms=0",
            "num.network.threads=2",
            "num.io.threads=2",
            "log.cleaner.dedupe.buffer.size=33554432",
            "auto.create.topics.enable=false",
            "",
        ]))
        # "--cluster-id=<id>": a base64 id may begin with "-" and be read as an option.
        formatted = subprocess.run(self.java + ["kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id or _cluster_id()}",
                                                "-c", str(self.properties), "--ignore-formatted", *scram],
                                   capture_output=True, text=True, timeout=120)
        if formatted.returncode != 0:
            raise ServiceError(f"kafka storage format failed:\n{formatted.stdout}{formatted.stderr}")

    def start(self) -> str:
        """Start the broker and wait until it answers; its bootstrap address."""
        self.launch()
        self.wait_ready()
        return self.bootstrap

    def acls(self) -> list[str]:
        """The ``kafka-acls.sh`` command of this broker's jars (org.apache.kafka.tools.AclCommand)."""
        return self.java + ["org.apache.kafka.tools.AclCommand"]

    def launch(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        self._log = open(self.folder / "broker.log", "ab")
        self.process = subprocess.Popen(self.java + ["kafka.Kafka", str(self.properties)], stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self) -> None:
        assert self.process is not None
        _wait_for_kafka(self.bootstrap, self.process, self.folder / "broker.log")

    def stop(self) -> None:
        """SIGTERM (a controlled shutdown), SIGKILL after 30 s."""
        if self.process is not None:
            _stop(self.process)
        self._close_log()

    def kill(self) -> None:
        """SIGKILL: the node is gone at once, as a crashed machine is."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class LocalKafkaCluster:
    """Three combined broker+controller KRaft nodes on one host, set as a production cluster
    is: replication 3 and min ISR 2 everywhere (the offsets and transaction-state topics too),
    no unclean leader election. Each node is its own process group, so that a SIGKILL is that
    node only; ``bootstrap`` names all three. The cluster fault tier (tests/cluster) kills and
    restarts nodes under a running worker."""

    def __init__(self, folder: Path, size: int = 3) -> None:
        cluster_id = _cluster_id()
        ports = [free_port() for _ in range(size)]
        voters = ",".join(f"{n + 1}@127.0.0.1:{port}" for n, port in enumerate(ports))
        self.nodes = [LocalKafka(_made(folder / f"node{n + 1}"), node_id=n + 1, cluster_id=cluster_id,
                                 controller_port=ports[n], voters=voters, replication=size)
                      for n in range(size)]
        self.bootstrap = ",".join(node.bootstrap for node in self.nodes)

    def start(self) -> str:
        """Every node (a KRaft quorum needs a majority before any answers), then wait for each."""
        for node in self.nodes:
            node.launch()
        for node in self.nodes:
            node.wait_ready()
        return self.bootstrap

    def node(self, node_id: int) -> LocalKafka:
        return self.nodes[node_id - 1]

    def stop(self) -> None:
        """Every node killed: a controlled shutdown of the last ones waits for a quorum that is gone."""
        for node in self.nodes:
            node.kill()


def _made(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _sasl_properties(folder: Path, users: dict[str, str]) -> list[str]:
    """The broker's SASL and TLS settings; makes a CA (``folder/ca.pem``) and the broker's
    certificate for 127.0.0.1 with openssl."""
    if shutil.which("openssl") is None:
        raise ServiceError("a secured local broker needs openssl to make its certificates")
    steps = [["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "7",
              "-subj", "/CN=rewards-local-ca"],
             ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr",
              "-subj", "/CN=127.0.0.1"],
             ["x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
              "-out", "broker.crt", "-days", "7", "-extfile", "san.ext"],
             ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr",
              "-subj", "/CN=rewards-worker"],
             ["x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
              "-out", "client.crt", "-days", "7"]]
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for step in steps:
        made = subprocess.run(["openssl", *step], cwd=folder, capture_output=True, text=True, timeout=60)
        if made.returncode != 0:
            raise ServiceError(f"openssl {step[0]} failed: {made.stderr[-2000:]}")
    (folder / "broker-keystore.pem").write_text((folder / "broker.key").read_text() + (folder / "broker.crt").read_text())
    known = " ".join(f'user_{user}="{password}"' for user, password in users.items())
    plain = f'org.apache.kafka.common.security.plain.PlainLoginModule required {known};'
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    lines = [f"sasl.enabled.mechanisms={','.join(SASL_MECHANISMS)}",
             "ssl.keystore.type=PEM", f"ssl.keystore.location={folder / 'broker-keystore.pem'}",
             "ssl.truststore.type=PEM", f"ssl.truststore.location={folder / 'ca.pem'}",
             "listener.name.ssl.ssl.client.auth=required"]
    for listener in ("sasl_plaintext", "sasl_ssl"):
        lines.append(f"listener.name.{listener}.plain.sasl.jaas.config={plain}")
        lines += [f"listener.name.{listener}.{m.lower()}.sasl.jaas.config={scram}" for m in SASL_MECHANISMS[1:]]
    return lines


@contextlib.contextmanager
def local_kafka(work_dir: Path | None = None) -> Iterator[str]:
    """A single-node KRaft broker on free loopback ports; yields its bootstrap address."""
    own_dir = work_dir is None
    folder = Path(tempfile.mkdtemp(prefix="rewards-kafka-")) if work_dir is None else work_dir
    kafka = LocalKafka(folder)
    try:
        yield kafka.start()
    finally:
        kafka.stop()
        if own_dir:
            shutil.rmtree(folder, ignore_errors=True)


def _cluster_id() -> str:
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _wait_for_kafka(bootstrap: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Ready when the broker answers a metadata request, not merely when the port opens."""
    import asyncio
    import logging

    from aiokafka.admin import AIOKafkaAdminClient

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # "unable to connect" until it is up

    async def answers() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.list_topics()
            return True
        except Exception:
            return False
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    deadline = time.monotonic() + KAFKA_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceError(f"the Kafka broker exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        if asyncio.run(answers()):
            return
        time.sleep(0.5)
    raise ServiceError(f"the Kafka broker did not answer within {KAFKA_START_TIMEOUT_S:.0f} s:\n"
                       f"{log.read_text()[-4000:]}")


# -- Redis -------------------------------------------------------------------------------------
def debian_binary(command: str, package: str) -> str:
    """The path of ``command``, installing Debian's ``package`` with apt-get when missing."""
    found = shutil.which(command)
    if found:
        return found
    if shutil.which("apt-get") is None:
        raise ServiceError(f"{command} is not installed and there is no apt-get to install {package} with")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}}
    subprocess.run(["apt-get", "update", "-qq"], check=False, timeout=600, **quiet)  # type: ignore[call-overload]
    installed = subprocess.run(["apt-get", "install", "-y", "-qq", package], timeout=900, **quiet)  # type: ignore[call-overload]
    found = shutil.which(command)
    if installed.returncode != 0 or not found:
        raise ServiceError(f"could not install {package}: {installed.stderr.decode()[-2000:]}")
    return found


def redis_server_binary() -> str:
    try:
        return debian_binary("redis-server", "redis-server")
    except ServiceError as exc:
        raise ServiceError(f"{exc} (or set REDIS_URL)") from None


class LocalRedis:
    """``redis-server`` on a loopback port fixed when it is made, without persistence: stopped
    and started again on the same address (the fault tests make a Redis outage with it)."""

    def __init__(self, append_only: bool = False) -> None:
        self.append_only = append_only  # every write on disk before it is acknowledged: a kill loses nothing
        self.binary = redis_server_binary()
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.folder = Path(tempfile.mkdtemp(prefix="rewards-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        """Start it and wait until it answers PING; its URL."""
        process = self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", str(self.folder),
             *(["--appendonly", "yes", "--appendfsync", "always"] if self.append_only else ["--appendonly", "no"])],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise ServiceError(f"redis-server exited with {process.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return self.url
            if time.monotonic() > deadline:
                raise ServiceError("redis-server did not answer PING")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)

    def kill(self) -> None:
        """SIGKILL: an outage, not a shutdown."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def local_redis() -> Iterator[str]:
    redis = LocalRedis()
    try:
        yield redis.start()
    finally:
        redis.remove()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# -- both ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def services() -> Iterator[Services]:
    """Kafka and Redis by the rules of the module doc."""
    with contextlib.ExitStack() as stack:
        kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        redis_url = os.environ.get("REDIS_URL")
        docker = (kafka is None or redis_url is None) and docker_available()
        if kafka is None:
            kafka = stack.enter_context(_container_kafka()) if docker else stack.enter_context(local_kafka())
        if redis_url is None:
            redis_url = stack.enter_context(_container_redis()) if docker else stack.enter_context(local_redis())
        yield Services(kafka_bootstrap=kafka, redis_url=redis_url)


@contextlib.contextmanager
def _container_kafka() -> Iterator[str]:
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:  # testcontainers before 4.15
        from testcontainers.kafka import KafkaContainer

    with KafkaContainer(KAFKA_IMAGE).with_kraft() as container:
        yield container.get_bootstrap_server()


@contextlib.contextmanager
def _container_redis() -> Iterator[str]:
    try:
        from testcontainers.community.redis import RedisContainer
    except ImportError:  # testcontainers before 4.15
        from testcontainers.redis import RedisContainer

    with RedisContainer(REDIS_IMAGE) as container:
        yield f"redis://{container.get_container_host_ip()}:{container.get_exposed_port(6379)}/0"


class _Stop(Exception):
    """SIGTERM or SIGINT: leave the services' context, which stops them."""


def _raise_stop(signum: int, _frame: object) -> None:
    raise _Stop(signal.Signals(signum).name)


def main() -> int:
    """Start both, print their addresses, and run until SIGTERM or Ctrl-C, which stop them
    (at any point, the start included: a service started is a service stopped)."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _raise_stop)
    try:
        with services() as found:
            print(f"KAFKA_BOOTSTRAP_SERVERS={found.kafka_bootstrap}")
            print(f"REDIS_URL={found.redis_url}", flush=True)
            while True:
                signal.pause()
    except _Stop:
        return 0
    except ServiceError as exc:
        print(f"localservices: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
