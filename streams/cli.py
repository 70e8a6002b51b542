"""rewards: the client-incentive programs of a Forex broker, run on its Kafka bus.

The worker reads the source systems' topics (clients, trades, payments, client-area commands,
partner plans, day closes), keeps every client's Reward Wallet, coverage, bonus turnover and
partner rebates, and writes ledger events and rejections. The other commands replay history
without Kafka, operate a deployment (topics, lag, reset, day closes) and try it out (demo,
publish). Settings come from the environment (docs/operations.md, "Configuration"); each command's --help
lists the variables it reads.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Final
from pathlib import Path

from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from handlers.rules import Rules, RulesError


def at_least(floor: float, kind: type = int, above: bool = False) -> Any:
    """An argparse type: a number of ``kind``, at least ``floor`` (over it with ``above``)."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < floor or above and value == floor:
            raise argparse.ArgumentTypeError(f"must be {'over' if above else 'at least'} {floor:g}, got {text}")
        return value
    return parse


def load_rules(path: str | None, park_window_s: int = -1, named: str = "--rules") -> Rules:
    """The rules file (or the defaults), with REWARDS_PARK_WINDOW_S over its parking window;
    ``named``: where the path came from, for the message when it names no file."""
    import dataclasses

    if path is not None and not Path(path).is_file():
        raise RulesError(f"{named} names {path!r}, which is not a file")
    rules = Rules.default() if path is None else Rules.from_toml(Path(path).read_text("utf-8"))
    if park_window_s >= 0:
        rules = dataclasses.replace(rules, park_window_us=park_window_s * 1_000_000)
    return rules


def _replay(args: argparse.Namespace) -> int:
    if args.from_kafka:
        return _replay_from_kafka(args)
    if not args.input:
        print("rewards: replay needs --input (or --from-kafka)", file=sys.stderr)
        return 2
    from streams.offline.replay import ReplayRefused, replay_files

    try:
        summary = replay_files(Path(args.input), Path(args.output), load_rules(args.rules),
                               show_progress=not args.quiet, order=args.order, settle_at_end=args.settle_at_end)
    except ReplayRefused as exc:
        print(f"rewards: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{chr(10) if sys.stderr.isatty() else ''}rewards: replay interrupted; {args.output} was not written",
              file=sys.stderr)
        return 130
    print(summary.render(), file=sys.stderr)
    return 0


def _replay_from_kafka(args: argparse.Namespace) -> int:
    import asyncio
    import time

    from streams.offline.logreplay import replay_log
    from streams.settings import Settings

    settings = Settings.from_env()
    namespace = args.namespace or f"replay-{int(time.time())}"
    rules = load_rules(args.rules or settings.rules_file or None, settings.park_window_s,
                       "--rules" if args.rules else "REWARDS_RULES_FILE")
    summary = asyncio.run(replay_log(settings, rules, Path(args.output), namespace,
                                     settings.redis_url if args.to_redis else None))
    print(f"replayed {summary.records:,} records of {settings.sequenced_topic} in {summary.seconds:.1f} s "
          f"into namespace {namespace!r}: {summary.outputs:,} outputs -> {args.output}", file=sys.stderr)
    return 0


def _whatif(args: argparse.Namespace) -> int:
    import hashlib

    from handlers.rules import DEFAULT_RULES_TOML
    from streams.offline.whatif import WhatifRefused, whatif_file, write_report

    if bool(args.input) == bool(args.from_kafka):
        print("rewards: whatif needs --input FILE or --from-kafka (one of them)", file=sys.stderr)
        return 2
    chosen = {}
    for role in ("base", "candidate"):
        path = getattr(args, role)
        text = DEFAULT_RULES_TOML if path is None else Path(path).read_text("utf-8")
        try:
            rules = Rules.default() if path is None else Rules.from_toml(text)
        except RulesError as exc:
            print(f"rewards: bad rules file {path} (--{role}): {exc}", file=sys.stderr)
            return 2
        chosen[role] = (rules, {"rules": path or "the default rules", "sha256": hashlib.sha256(text.encode()).hexdigest()})
    (base, base_about), (candidate, candidate_about) = chosen["base"], chosen["candidate"]
    pinned = None
    if args.from_ts:
        from streams.offline.whatif import pinned_version

        try:
            pinned = pinned_version(Path(args.candidate).read_text("utf-8"), args.from_ts, base)
        except WhatifRefused as exc:
            print(f"rewards: {exc}", file=sys.stderr)
            return 2
        candidate, candidate_about["from"] = base, args.from_ts
    try:
        if args.from_kafka:
            import asyncio

            from streams.offline.replay import Progress
            from streams.offline.whatif import compare, sequenced_history
            from streams.settings import Settings

            settings = Settings.from_env()
            history = f"the sequenced log {settings.sequenced_topic} at {settings.kafka_bootstrap}, by ts"
            history_lines = asyncio.run(sequenced_history(settings))
            found = compare(history_lines, base, candidate, None if args.quiet else Progress(len(history_lines)),
                            pinned=pinned)
        else:
            history = f"{args.input} ({'by ts' if args.order == 'ts' else 'file order'})"
            found = whatif_file(Path(args.input), base, candidate, show_progress=not args.quiet, order=args.order,
                                pinned=pinned)
        content = write_report(found, {"base": base_about, "candidate": candidate_about, "history": history},
                               Path(args.report))
    except WhatifRefused as exc:
        print(f"rewards: {exc}", file=sys.stderr)
        return 2
    print(f"{found.events_in:,} events under both rule sets in {found.seconds:.1f} s; "
          f"{content['outputs']['changed']:,} outputs differ", file=sys.stderr)
    for program in content["programs"]:
        pct = program["difference_pct"]
        print(f"  {program['title']:<28}{program['base']:>16} -> {program['candidate']:>16}"
              f"  ({'+' if not program['difference'].startswith('-') else ''}{program['difference']}"
              f"{'' if pct is None else f', {pct} %'})", file=sys.stderr)
    print(f"report: {Path(args.report) / 'report.html'} and report.json", file=sys.stderr)
    return 0


def _terms(args: argparse.Namespace) -> int:
    import asyncio
    import time
    from datetime import UTC, datetime

    from handlers import terms as timeline
    from streams.offline import terms
    from streams.settings import Settings

    settings = Settings.from_env()
    base = load_rules(settings.rules_file or None, settings.park_window_s)
    entries, accepted = terms.decide(asyncio.run(terms.read_topic(settings)), base,
                                     asyncio.run(terms.read_words(settings)) if args.action == "list" else None,
                                     settings.partitions)
    if args.action == "list":
        now_us = int(time.time() * 1_000_000)
        print(terms.as_json(entries, accepted, now_us).decode() if args.json else terms.render(entries, accepted,
                                                                                                 now_us))
        return 0
    if not (args.file and args.version and args.effective):
        print("rewards: terms publish needs FILE, --version and --effective", file=sys.stderr)
        return 2
    try:
        event, built, version = terms.version_event(Path(args.file).read_text("utf-8"), args.version,
                                                     args.effective, args.note, datetime.now(UTC), base,
                                                     args.min_notice, settings.order_grace_ms, accepted)
    except terms.TermsRefused as exc:
        print(f"rewards: {exc}", file=sys.stderr)
        return 2
    before = timeline.rules_at(accepted, base, version.effective_us - 1)
    print(f"version {args.version}, in force from {args.effective}; against the terms in force before it:")
    for line in terms.changes(before, built) or ["no change"]:
        print(f"  {line}")
    if args.dry_run:
        print("dry run: not published")
        return 0
    asyncio.run(terms.publish(settings, event))
    print(f"published to {settings.topic_programs} as event {event['id']}")
    return 0


def _worker(args: argparse.Namespace) -> int:
    import asyncio

    from streams.ops.topics import TopicsRefused, check_copartitioned, check_topics, ensure_topics
    from streams.worker.app import Worker, run
    from streams.settings import Settings

    settings = Settings.from_env()
    rules = load_rules(args.rules or settings.rules_file or None, settings.park_window_s,
                       "--rules" if args.rules else "REWARDS_RULES_FILE")
    problem = writable(settings.data_dir)
    if problem:
        print(f"rewards: REWARDS_DATA_DIR {settings.data_dir!r} {problem}", file=sys.stderr)
        return 2
    try:
        created = asyncio.run(ensure_topics(settings))
    except TopicsRefused as exc:
        for line in exc.lines(exc.refused):
            print(f"rewards: {line}", file=sys.stderr)
        print("rewards: not starting without its topics (docs/operations.md, \"Topics\": `rewards topics --print` gives their "
              "definitions, for a platform team to create)", file=sys.stderr)
        return 2
    if created:
        print(f"rewards: created topics {', '.join(created)}", file=sys.stderr)
    problem = asyncio.run(check_copartitioned(settings))
    if problem:
        print(f"rewards: {problem}", file=sys.stderr)
        return 2
    differences = asyncio.run(check_topics(settings))
    for difference in differences:
        print(f"rewards: {difference}", file=sys.stderr)
    if differences and settings.topic_check == "strict":
        print("rewards: not starting on topics that differ from the worker's contract (docs/operations.md, \"Topics\"); "
              "REWARDS_TOPIC_CHECK=warn starts anyway", file=sys.stderr)
        return 2
    run(Worker(settings, rules))
    return 0


def writable(folder: str) -> str | None:
    """What is wrong with ``folder`` as a place to write (it is made if missing), or None."""
    import os

    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot be made: {exc.strerror}"
    return None if os.access(folder, os.W_OK | os.X_OK) else "is not writable by this user"


def _close_day(args: argparse.Namespace) -> int:
    import asyncio
    from datetime import date

    from streams.ops.topics import publish_day_close
    from streams.settings import Settings

    try:
        day = date.fromisoformat(args.date)
    except ValueError:
        print(f"rewards: not a YYYY-MM-DD date: {args.date!r}", file=sys.stderr)
        return 2
    event = asyncio.run(publish_day_close(Settings.from_env(), day, args.id))
    print(f"published {event['id']} (ts {event['ts']})")
    return 0


def _topics(args: argparse.Namespace) -> int:
    import asyncio

    from streams.ops.topics import TopicsRefused, check_topics, definitions, ensure_topics, topic_plan
    from streams.settings import Settings

    settings = Settings.from_env()
    if args.print:
        print(definitions(settings), end="")
        return 0
    refused: dict[str, str] = {}
    try:
        created = asyncio.run(ensure_topics(settings))
    except TopicsRefused as exc:
        created, refused = exc.created, exc.refused
    for name, partitions in topic_plan(settings).items():
        status = "  (created)" if name in created else "  (REFUSED by Kafka)" if name in refused else ""
        print(f"{name:40} {partitions:>4} partitions{status}")
    for line in TopicsRefused.lines(refused):
        print(f"rewards: {line}", file=sys.stderr)
    differences = asyncio.run(check_topics(settings))
    for difference in differences:
        print(f"rewards: {difference}", file=sys.stderr)
    return 1 if differences or refused else 0


def _reset(args: argparse.Namespace) -> int:
    import asyncio

    from streams.ops.reset import execute, plan
    from streams.settings import Settings

    settings = Settings.from_env()
    found = asyncio.run(plan(settings))
    if found.groups_running:
        running = ", ".join(f"{group} ({n} members)" for group, n in sorted(found.groups_running.items()))
        print(f"rewards: workers of {settings.app_id} are running: {running}. Stop every worker first "
              "(kubectl scale deployment/rewards-worker --replicas=0), then reset.", file=sys.stderr)
        return 1
    if args.execute:
        asyncio.run(execute(settings, found))
    print(f"{'reset' if args.execute else 'dry run: nothing changed; with --execute, reset'} app id {settings.app_id} "
          f"on {settings.kafka_bootstrap}:")
    for line in found.lines(settings, done=args.execute):
        print(f"  {line}")
    if args.execute:
        print("the next worker started rebuilds every state from the input topics' history")
    return 0


def _lag(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from streams.ops.lag import group_lag
    from streams.settings import Settings

    settings = Settings.from_env(**({"app_id": args.group} if args.group else {}))
    rows = asyncio.run(group_lag(settings, args.topic or None))
    total = sum(row.lag for row in rows)
    worst = max((row.lag for row in rows), default=0)
    over = args.max_lag is not None and worst > args.max_lag
    if args.json:
        print(json.dumps({"group": settings.group, "total_lag": total, "max_lag": worst,
                          "threshold": args.max_lag, "exceeded": over,
                          "partitions": [{"topic": r.topic, "partition": r.partition, "committed": r.committed,
                                          "end": r.end, "lag": r.lag} for r in rows]}, indent=2))
    else:
        width = max([len(r.topic) for r in rows] + [5])
        print(f"{'topic':{width}}  partition   committed         end         lag")
        for r in rows:
            committed = "-" if r.committed is None else f"{r.committed:,}"
            print(f"{r.topic:{width}}  {r.partition:>9}  {committed:>10}  {r.end:>10,}  {r.lag:>10,}")
        print(f"group {settings.group}: total lag {total:,}, largest {worst:,} on {len(rows)} partitions"
              + (f"; over the threshold {args.max_lag:,}" if over else ""))
    return 1 if over else 0


def _publish(args: argparse.Namespace) -> int:
    import asyncio

    from streams.devtools.publish import publish, publish_per_topic
    from streams.settings import Settings

    settings = Settings.from_env()
    lines = [line for line in Path(args.events).read_bytes().splitlines() if line.strip()]
    if args.per_topic or args.skew_ms or args.rate:
        counts = asyncio.run(publish_per_topic(lines, settings, args.skew_ms, args.rate, args.seed))
    else:
        counts = {"(one producer)": asyncio.run(publish(lines, settings))}
    for topic, count in sorted(counts.items()):
        print(f"{topic:40} {count:>10,}")
    return 0


def _services(args: argparse.Namespace) -> int:
    from streams.devtools.localservices import main as serve

    return serve()


def _sample_day(args: argparse.Namespace) -> int:
    from streams.devtools.sample_day import write

    count = write(args.output, clients=args.clients, fills=args.fills, days=args.days, seed=args.seed)
    print(f"rewards: wrote {count:,} input events ({args.fills:,} fills, {args.clients:,} clients, {args.days} "
          f"day{'s' if args.days != 1 else ''}) to {args.output}", file=sys.stderr)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from streams.devtools import demo

    return demo.main(fills=args.fills, clients=args.clients, seed=args.seed, work=args.work)


_KAFKA = "KAFKA_BOOTSTRAP_SERVERS, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*"
_TOPICS = "REWARDS_APP_ID, REWARDS_TOPIC_*, REWARDS_PARTITIONS"
READS: Final = {
    "replay": "nothing from the environment without --from-kafka; with it, " + _KAFKA + ", " + _TOPICS
              + ", REWARDS_RULES_FILE, REWARDS_PARK_WINDOW_S, and REDIS_URL with --to-redis",
    "whatif": "nothing from the environment without --from-kafka; with it, " + _KAFKA + ", " + _TOPICS,
    "publish": _KAFKA + ", REWARDS_TOPIC_*, REWARDS_COMPRESSION",
    "worker": "every variable of the configuration table of docs/operations.md (" + _KAFKA + ", REDIS_URL, REWARDS_*)",
    "close-day": _KAFKA + ", REWARDS_TOPIC_SETTLEMENT",
    "terms": _KAFKA + ", " + _TOPICS + ", REWARDS_RULES_FILE, REWARDS_ORDER_GRACE_MS",
    "sample-day": "nothing from the environment",
    "services": "KAFKA_BOOTSTRAP_SERVERS and REDIS_URL: when set, that service is not started",
    "demo": "nothing: it starts its own Kafka and Redis (or uses KAFKA_BOOTSTRAP_SERVERS and REDIS_URL when set)",
    "lag": _KAFKA + ", " + _TOPICS,
    "topics": _KAFKA + ", " + _TOPICS + ", REWARDS_REPLICATION, REWARDS_MIN_INSYNC_REPLICAS, REWARDS_RETENTION_MS, "
              "REWARDS_CHANGELOG_SEGMENT_MS",
    "reset": _KAFKA + ", " + _TOPICS + ", REDIS_URL",
}


def build_parser() -> argparse.ArgumentParser:
    from streams.offline.terms import MIN_NOTICE_S

    parser = argparse.ArgumentParser(prog="rewards", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from streams.ops.versions import version_line

    parser.add_argument("--version", action="version", version=version_line())
    commands = parser.add_subparsers(dest="command", required=True)

    replay = command(commands, "replay", help="run the rule engine over a .jsonl file of input events, without Kafka")
    replay.add_argument("--input", help="input events, one JSON object per line")
    replay.add_argument("--output", required=True, help="where to write the output events")
    replay.add_argument("--rules", help="rules file (TOML) overriding the defaults key by key")
    replay.add_argument("--quiet", action="store_true", help="no progress bar")
    replay.add_argument("--from-kafka", action="store_true",
                        help="instead of a file: rebuild state from the worker's sequenced log, from the "
                             "earliest offsets, under a fresh consumer group and state namespace")
    replay.add_argument("--namespace", help="with --from-kafka: the state namespace (default: replay-<time>)")
    replay.add_argument("--to-redis", action="store_true",
                        help="with --from-kafka: also write the read model, under the namespace's keys")
    replay.add_argument("--order", choices=("file", "ts"), default="file",
                        help="file: the file's order (default); ts: sorted as the worker records it "
                             "(by ts, then topic precedence, then file order)")
    replay.add_argument("--settle-at-end", action="store_true",
                        help="apply the inputs still waiting for a prerequisite when the file ends, as they "
                             "stand (their usual refusal), as the parking window would; without it they are "
                             "listed in the summary and have no outputs")
    replay.set_defaults(run=_replay)

    whatif = command(commands, "whatif", help="run two rules files over the same history and report what the "
                     "change would have paid, per program, day, account type, client and partner")
    whatif.add_argument("--input", help="input events, one JSON object per line")
    whatif.add_argument("--from-kafka", action="store_true",
                        help="instead of a file: every input of the worker's sequenced log, by ts (read with no "
                             "consumer group; held in memory)")
    whatif.add_argument("--base", help="the rules in force (TOML; default: the default rules)")
    whatif.add_argument("--candidate", required=True, help="the rules to try (TOML)")
    whatif.add_argument("--from", dest="from_ts", metavar="TS",
                        help="the candidate only from TS on (RFC 3339 UTC): before it, the history's own terms "
                             "(the base and its program.terms versions); from it, the candidate, in place of "
                             "the history's versions taking effect from TS on")
    whatif.add_argument("--report", required=True, help="folder for report.json and report.html (made if missing)")
    whatif.add_argument("--order", choices=("file", "ts"), default="file", help="as for replay")
    whatif.add_argument("--quiet", action="store_true", help="no progress bar")
    whatif.set_defaults(run=_whatif)

    publish = command(commands, "publish", help="publish a .jsonl file of input events to their source topics, "
                      "keyed by client_id, as the source systems would (for trials and tests)")
    publish.add_argument("events", help="input events, one JSON object per line")
    publish.add_argument("--per-topic", action="store_true",
                         help="one producer per topic, concurrently, as independent source systems publish")
    publish.add_argument("--skew-ms", type=at_least(0), default=0, metavar="N",
                         help="each topic's producer lags by a random 0..N ms (per event with --rate, "
                              "else at its start); implies --per-topic")
    publish.add_argument("--rate", type=at_least(0, float, above=True), metavar="EVENTS_PER_S",
                         help="pace the file: its i-th event is due i/rate s after the start (live, not a "
                              "backlog); implies --per-topic")
    publish.add_argument("--seed", type=int, default=0, help="seed of the random lags")
    publish.set_defaults(run=_publish)

    worker = command(commands, "worker", help="run the stream worker: it reads the source topics, writes the "
                     "ledger and dead-letter topics and the Redis read model, and serves the API, the status page "
                     "and /metrics")
    worker.add_argument("--rules", help="rules file (TOML); default: REWARDS_RULES_FILE, else the defaults")
    worker.set_defaults(run=_worker)

    terms_cmd = command(commands, "terms", help="publish a version of the program terms (a rules file in force "
                        "from an instant of event time) to the terms topic, or list the timeline found there")
    terms_cmd.add_argument("action", choices=("publish", "list"))
    terms_cmd.add_argument("file", nargs="?", help="publish: the rules file (TOML) of the version: program terms only")
    terms_cmd.add_argument("--version", help="publish: the version's unique name")
    terms_cmd.add_argument("--effective", metavar="TS", help="publish: when it takes effect (RFC 3339 UTC)")
    terms_cmd.add_argument("--note", help="publish: a note for people (the topic keeps it)")
    terms_cmd.add_argument("--min-notice", type=int, default=MIN_NOTICE_S, metavar="S",
                           help="publish: how far ahead --effective must be, in seconds (default 3600; never "
                                "under twice REWARDS_ORDER_GRACE_MS and a minute)")
    terms_cmd.add_argument("--dry-run", action="store_true", help="publish: check and show the change only")
    terms_cmd.add_argument("--json", action="store_true", help="list: JSON instead of a table")
    terms_cmd.set_defaults(run=_terms)

    close = command(commands, "close-day", help="publish settlement.day_closed for DATE to the settlement topic")
    close.add_argument("date", help="the day to close, YYYY-MM-DD")
    close.add_argument("--id", help="event id (default: derived from the date, so a repeat is harmless)")
    close.set_defaults(run=_close_day)

    demo = command(commands, "demo", help="a generated broker day through the worker on a local Kafka and Redis, "
                   "with a summary")
    day_options(demo)
    demo.add_argument("--work", default=".cache/demo", help="folder for the worker's log and data")
    demo.set_defaults(run=_demo)

    serve = command(commands, "services", help="start a local Kafka broker and Redis (as the tests and the demo do), "
                    "print their addresses as KAFKA_BOOTSTRAP_SERVERS= and REDIS_URL= lines, and run until Ctrl-C or "
                    "SIGTERM, which stop both")
    serve.set_defaults(run=_services)

    day = command(commands, "sample-day", help="write a generated broker day of input events to a .jsonl file (clients "
                  "onboarding, deposits, commands, fills, plans and day closes, a few malformed), to replay or publish")
    day.add_argument("output", help="the file to write")
    day_options(day)
    day.add_argument("--days", type=at_least(1), default=1, help="days of event time (default 1)")
    day.set_defaults(run=_sample_day)

    lag = command(commands, "lag", help="the worker group's lag per partition (end offset - committed offset), "
                  "from the broker")
    lag.add_argument("--json", action="store_true", help="JSON instead of a table")
    lag.add_argument("--max-lag", type=at_least(0), metavar="N",
                     help="exit 1 when any partition's lag is over N (for a probe or a script)")
    lag.add_argument("--group", help="consumer group (default: REWARDS_APP_ID)")
    lag.add_argument("--topic", action="append",
                     help="only this topic (repeatable; default: every topic the worker consumes)")
    lag.set_defaults(run=_lag)

    topics = command(commands, "topics", help="create the worker's topics where missing, list them, and say "
                                 "where existing ones differ from the worker's contract (exit 1)")
    topics.add_argument("--print", action="store_true",
                        help="print the topics' definitions as kafka-topics.sh commands instead (no connection), "
                             "for a cluster whose topics a platform team creates")
    topics.set_defaults(run=_topics)
    reset = command(commands, "reset", help="take the app id's deployment back to nothing (internal topics, the "
                    "sequencer's place in the inputs, the Redis views), so that its workers rebuild every state from "
                    "the inputs' history; a dry run unless --execute")
    reset.add_argument("--execute", action="store_true", help="do it (without it: say what it would do)")
    reset.set_defaults(run=_reset)
    return parser


def day_options(parser: argparse.ArgumentParser) -> None:
    """The generated day's size and seed (rewards demo, rewards sample-day)."""
    parser.add_argument("--fills", type=at_least(1), default=200_000, help="trade fills in the day (default 200,000)")
    parser.add_argument("--clients", type=at_least(1), default=3000, help="clients (default 3,000)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated day: the same seed, the same day")


def command(commands: Any, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand whose --help says what it is for and which environment variables it reads."""
    made: argparse.ArgumentParser = commands.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                                                        epilog=f"Reads: {READS[name]}.")
    return made


def main(argv: list[str] | None = None) -> int:
    from streams.connect import ConnectionReasons, NotAllowed
    from streams.ops.topics import TopicsUnreadable
    from streams.settings import SettingsError

    args = build_parser().parse_args(argv)
    reasons = ConnectionReasons.attach()
    try:
        code: int = args.run(args)
    except RulesError as exc:
        print(f"rewards: bad rules file: {exc}", file=sys.stderr)
        return 2
    except SettingsError as exc:
        print(f"rewards: bad configuration: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rewards: interrupted", file=sys.stderr)
        return 130
    except RedisError as exc:
        from streams.ops.readmodel import redis_address
        from streams.settings import Settings

        print(f"rewards: cannot use Redis at {redis_address(Settings.from_env().redis_url)} (REDIS_URL): {exc}",
              file=sys.stderr)
        return 2
    except (NotAllowed, TopicsUnreadable) as exc:  # a missing ACL, named; topics whose settings cannot be read
        print(f"rewards: {exc}", file=sys.stderr)
        return 2
    except KafkaError as exc:
        from streams.connect import explain
        from streams.settings import Settings

        print(f"rewards: {explain(exc, Settings.from_env(), reasons.reasons)}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"rewards: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
