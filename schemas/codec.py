"""Bytes to typed input events, typed output events to bytes.

Decoding takes one fast path (msgspec validates straight from the bytes into the typed
model); only when that fails is the input parsed again with orjson, to tell *why* it is bad:
``malformed`` (not a JSON object), ``unknown_type`` or ``invalid_field``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import orjson

from schemas.inputs import INPUT_MODELS, AnyInput, InputEvent
from schemas.timefmt import parse_ts_us
from schemas.outputs import EventRejected, OutputEvent, RejectionReason

RAW_BYTES_MAX: Final = 64 * 1024

_decoder: Final = msgspec.json.Decoder(AnyInput)
_encoder: Final = msgspec.json.Encoder()


@dataclass(slots=True, frozen=True)
class BadInput:
    """Why an input could not become an event, with what could still be read of it."""

    reason: RejectionReason
    error: str
    cause_id: str | None = None
    client_id: str | None = None
    ts: str | None = None


@dataclass(slots=True, frozen=True)
class Decoded:
    event: InputEvent
    ts_us: int  # the event's ts, parsed


def decode(raw: bytes) -> Decoded | BadInput:
    if len(raw) > RAW_BYTES_MAX:
        return BadInput("malformed", f"input of {len(raw)} bytes is over the {RAW_BYTES_MAX}-byte limit")
    try:
        event: InputEvent = _decoder.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return _classify(raw, exc)
    try:
        return Decoded(event, parse_ts_us(event.ts))
    except ValueError as exc:
        return BadInput("invalid_field", f"{event.__struct_config__.tag}: `ts`: {exc}", event.id,
                        getattr(event, "client_id", None), event.ts)


def _classify(raw: bytes, exc: Exception) -> BadInput:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as bad_json:
        return BadInput("malformed", f"not JSON: {bad_json}")
    if not isinstance(obj, dict):
        return BadInput("malformed", f"not a JSON object but a JSON {type(obj).__name__}")
    cause_id = _str_or_none(obj.get("id"))
    client_id = _str_or_none(obj.get("client_id"))
    ts = _str_or_none(obj.get("ts"))
    event_type = obj.get("type")
    if not isinstance(event_type, str) or event_type not in INPUT_MODELS:
        return BadInput("unknown_type", f"unknown event type {event_type!r}", cause_id, client_id, ts)
    return BadInput("invalid_field", f"{event_type}: {exc}", cause_id, client_id, ts)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def canonical_bytes(event: InputEvent) -> bytes:
    """The event's contract fields in a fixed order: what "the same payload" means."""
    return _encoder.encode(event)


def encode_output(output: OutputEvent) -> bytes:
    return orjson.dumps(output)


def rejection(bad: BadInput, raw: bytes, source: dict[str, Any], output_id: str) -> EventRejected:
    try:
        text, encoding = raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(raw).decode("ascii"), "base64"
    return EventRejected(
        id=output_id,
        cause_id=bad.cause_id,
        ts=bad.ts,
        client_id=bad.client_id,
        reason=bad.reason,
        error=bad.error,
        raw=text,
        raw_encoding=encoding,  # type: ignore[arg-type]
        source=source,
    )
