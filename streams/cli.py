"""The ``rewards`` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from handlers.rules import Rules, RulesError


def load_rules(path: str | None) -> Rules:
    if path is None:
        return Rules.default()
    return Rules.from_toml(Path(path).read_text("utf-8"))


def _replay(args: argparse.Namespace) -> int:
    from streams.replay import replay_files

    summary = replay_files(Path(args.input), Path(args.output), load_rules(args.rules),
                           show_progress=not args.quiet)
    print(summary.render(), file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rewards", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    replay = commands.add_parser(
        "replay", help="run the rule engine over a .jsonl file of input events, without Kafka")
    replay.add_argument("--input", required=True, help="input events, one JSON object per line")
    replay.add_argument("--output", required=True, help="where to write the output events")
    replay.add_argument("--rules", help="rules file (TOML) overriding the defaults key by key")
    replay.add_argument("--quiet", action="store_true", help="no progress bar")
    replay.set_defaults(run=_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except RulesError as exc:
        print(f"rewards: bad rules file: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"rewards: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
