"""The stream worker: the Faust application shell around four processors of the project's own, each a
job on its own partition runtime (streams.worker.runtime). Touch it to add a processor or a timer:
it only builds and connects them.

    sequencer    input topics -> <app>.sequenced   (one recorded order per client; broadcasts)
                 (group <app>-sequencer: streams.worker.sequencer)
    ledger       <app>.sequenced -> ledger, dead letters, identity requests, commission reports
                 (group <app>-ledger, state in <app>-state-changelog: streams.worker.ledgerloop, .ledger)
    identity     identity requests, ledger progress -> verdicts back into <app>.sequenced
                 (group <app>-identity, state in <app>-identities-changelog: streams.worker.registryloop)
    commissions  commission reports -> commission.payout, override.payout (a partner's total over all partitions)
                 (group <app>-commissions, state in <app>-commissions-changelog: streams.worker.commissionloop)

Faust is the shell only: the App, its lifecycle and signals, the web server and its pages, the
timers. No Faust stream, agent or table holds an offset or any state: Faust's commit path has
open upstream bugs (faust-streaming #596, #606) that were seen here to commit records never
processed. Every processor reads with aiokafka (streams.worker.kafkaio) and the last three keep their
position in their own state (streams.worker.processor).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import sys
import time
from typing import Any, Final

import faust
from aiokafka.errors import ProducerFenced

import handlers
from handlers.rules import Rules
from streams.ops import api, logs
from streams.worker.commissionloop import CommissionJob
from streams.worker.kafkaio import Fenced, Sender
from streams.worker.ledgerloop import LedgerJob
from streams.worker.ports import Topics
from streams.ops.metrics import Metrics
from streams.ops.readmodel import ReadModel
from streams.worker.registryloop import RegistryJob
from streams.worker.runtime import PartitionRuntime
from streams.worker.sequencer import SequencerJob
from streams import connect
from streams.ops.versions import versions
from streams.settings import Settings
from streams.ops.status import View

log = logging.getLogger("rewards")

# The garbage collector's thresholds for the worker (Python's: 700, 10, 10). The worker allocates
# a few hundred objects per event and holds hundreds of thousands (its partitions' state): with
# Python's, the worker of `make bench-worker` spent 1.6 and 2.2 s (of 9.2 and 12.4 s of CPU, two
# runs) in some 1,900 collections, 15 and 16 of them full ones rescanning that state; with these,
# 0.1 s in 4 (7.6 s of CPU). Cyclic garbage waits longer for a collection; the worker makes
# little (its state is plain data). The offline replay sets the same (streams.offline.replay).
GC_THRESHOLDS: Final = (50_000, 20, 100)


def faust_credentials(settings: Settings) -> Any:
    """The cluster's security (streams.connect) for the Faust shell's own client, which reads only
    Faust's own topics: no state the worker depends on."""
    options = connect.security(settings)
    if options["security_protocol"] == "SSL":
        return faust.SSLCredentials(options["ssl_context"])
    if "sasl_mechanism" in options:
        return faust.SASLCredentials(username=options["sasl_plain_username"], password=options["sasl_plain_password"],
                                     mechanism=options["sasl_mechanism"], ssl_context=options.get("ssl_context"))
    return None


class Worker:
    def __init__(self, settings: Settings, rules: Rules) -> None:
        self.settings, self.rules = settings, rules
        self.app = app = faust.App(
            settings.group,
            broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
            broker_credentials=faust_credentials(settings),
            producer_compression_type=None if settings.compression == "none" else settings.compression,
            store="memory://",
            web_enabled=True,
            web_host=settings.web_host,
            web_port=settings.web_port,
            datadir=settings.data_dir,
            # Faust's own consumer (it reads only Faust's leader topic) joins a group of its own
            # before the worker starts: a worker restarted after a crash waits for the crashed
            # one's session there to expire, 60 s by default in Faust; the worker's session instead.
            broker_session_timeout=settings.session_timeout_ms / 1000,
            broker_heartbeat_interval=settings.session_timeout_ms / 3000,
        )
        self.topics = Topics(ledger=settings.ledger_topic, deadletter=settings.deadletter_topic,
                             identity=settings.identity_topic, commissions=settings.commission_topic,
                             sequenced=settings.sequenced_topic)
        self.metrics = metrics = Metrics()
        self.read_model = ReadModel(settings.redis_url, settings.redis_prefix, rules)
        self.sender = sender = Sender(settings)
        self.fenced = False
        self.refused: connect.NotAllowed | None = None  # a missing ACL stopped it (exit 2)
        self.sequencer = SequencerJob(settings, metrics)
        self.ledger = LedgerJob(settings, metrics, rules, self.topics, self.read_model)
        jobs = (self.sequencer, self.ledger, RegistryJob(settings, metrics),
                CommissionJob(settings, metrics, rules, self.topics))
        self.runtimes = [PartitionRuntime(settings, sender, metrics, self._crash, job) for job in jobs]
        for runtime in self.runtimes:
            app.task(runtime.run)
        app.timer(interval=5.0)(self._observe)
        app.task(self._quiet_client_logs)
        self.versions = versions()
        metrics.info.info({**self.versions, "app": settings.app_id})  # the dashboard's app variable
        api.register(app, View(settings, metrics, self.read_model, self.versions, time.time(), self.ledger,
                               self.processing))
        app.task(self._announce)

    def processing(self) -> bool:
        """Every partition runtime is in its group with its partitions recovered, and none was fenced."""
        return not self.fenced and all(runtime.ready for runtime in self.runtimes)

    async def _announce(self) -> None:
        """One line when the worker is ready, with where it serves and what it reads."""
        while not self.processing():
            await asyncio.sleep(0.1)
        settings = self.settings
        host = socket.gethostname() if settings.web_host in ("0.0.0.0", "::", "") else settings.web_host
        log.info("ready: rewards %s, app id %s, serving http://%s:%d/ (status page, /health, /metrics, client API), "
                 "Kafka at %s (%s), engine %s", self.versions["rewards"], settings.app_id, host, settings.web_port,
                 settings.kafka_bootstrap, settings.kafka_security_protocol, handlers.BUILD,
                 extra={"event": "ready", "web": f"http://{host}:{settings.web_port}/", "engine": handlers.BUILD})

    async def _crash(self, exc: BaseException) -> None:
        """A loop's failure crashes the worker (a supervisor restarts it and it recovers from
        its changelogs). A fenced loop is no failure: another worker holds its partitions now, as
        after this one was paused past its session; it stops cleanly, the way SIGTERM stops it."""
        if isinstance(exc, Fenced):
            if not self.fenced:
                self.fenced = True
                log.warning("%s", exc)
                signal.raise_signal(signal.SIGTERM)
            return
        if isinstance(exc, connect.NotAllowed):  # a missing ACL: stop cleanly, exit 2 (``run``); no restart helps
            if self.refused is None:
                self.refused = exc
                log.critical("%s", exc)
                signal.raise_signal(signal.SIGTERM)
            return
        await self.app.crash(exc)

    async def _observe(self) -> None:
        """Every 5 s: the offsets and lag of the partitions held, and the source partitions the
        sequencer waits for (also while a turn of its is stuck on a failover), for /metrics and
        the status page."""
        self.metrics.set_offsets([row for runtime in self.runtimes for row in runtime.offsets()])
        self.metrics.observe_waits(self.sequencer.waiting())
        self.metrics.read_model_backlog.set(len(self.read_model.backlog))

    async def _quiet_client_logs(self) -> None:
        """aiokafka logs a debug line per record sent; at the worker's rates, building those
        lines cost 6 % of its time even when not shown. And a fenced producer leaves aiokafka's
        own futures holding the fencing error, which asyncio would print as tracebacks nobody
        read: the one line the fenced loop logs says it all."""
        for name in ("aiokafka", "kafka"):
            logging.getLogger(name).setLevel(max(logging.INFO, logging.getLogger().getEffectiveLevel()))
        loop = asyncio.get_running_loop()
        previous = loop.get_exception_handler()

        def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            if isinstance(context.get("exception"), (ProducerFenced, Fenced)):
                log.debug("after fencing: %s", context.get("message"))
            elif previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handle)


def run(worker: Worker) -> None:
    """Run the worker until it is told to stop (Faust's worker: signals and the event loop; the
    log is the worker's own, streams.ops.logs)."""
    settings = worker.settings
    gc.set_threshold(*GC_THRESHOLDS)
    logs.setup(settings.log_level, settings.log_format,
               secrets=(settings.kafka_sasl_password, settings.kafka_ssl_key_password))
    shell = faust.Worker(worker.app, quiet=True, override_logging=False, redirect_stdouts=False)
    shell.spinner = None  # a terminal spinner's escape codes have no place in a log
    try:
        shell.execute_from_commandline()
    except SystemExit:
        if worker.refused is None:
            raise
    # A missing ACL: its line last, then exit 2 as for every setting refused (streams.cli), which
    # tells a supervisor that a restart will not help.
    print(f"rewards: {worker.refused}", file=sys.stderr)
    raise SystemExit(2)
