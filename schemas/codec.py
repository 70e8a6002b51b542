"""Bytes to typed input events, typed output events to bytes.

Decoding takes one fast path (msgspec validates straight from the bytes into the typed
model); only when that fails is the input parsed again with orjson, to tell *why* it is bad:
``malformed`` (not a JSON object), ``unknown_type`` or ``invalid_field``.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import orjson

from schemas.inputs import INPUT_MODELS, AnyInput, InputEvent
from schemas.timefmt import parse_ts_us
from schemas.outputs import EventRejected, OutputEvent, RejectionReason

RAW_BYTES_MAX: Final = 64 * 1024  # the largest input the offline engine reads (the worker's: REWARDS_MAX_INPUT_BYTES)
RAW_KEPT_BYTES: Final = 4096       # the most of an input a rejection copies into `raw`

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


class Decoded:
    """An input that became an event (a native class: the module is compiled, and one is made
    per input)."""

    def __init__(self, event: InputEvent, ts_us: int) -> None:
        self.event: Final = event
        self.ts_us: Final = ts_us  # the event's ts, parsed


def decode(raw: bytes) -> Decoded | BadInput:
    if len(raw) > RAW_BYTES_MAX:
        return BadInput("too_large", f"the input is {len(raw):,} bytes, over the largest the engine reads "
                        f"({RAW_BYTES_MAX:,} bytes)")
    try:
        event: InputEvent = _decoder.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec: bad UTF-8 in a string
        return _classify(raw, exc)
    try:
        return Decoded(event, parse_ts_us(event.ts))
    except ValueError as exc:
        return BadInput("invalid_field", f"{event.__struct_config__.tag}: `ts`: {exc}", event.id,
                        getattr(event, "client_id", None), event.ts)


def _classify(raw: bytes, exc: Exception) -> BadInput:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad_text:
        return BadInput("malformed", f"not UTF-8 text: byte 0x{raw[bad_text.start]:02x} at offset {bad_text.start:,} "
                        "is not part of a UTF-8 character (inputs are JSON objects in UTF-8)")
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
    return _encoder.encode(output)


def encode_outputs(outputs: list[OutputEvent]) -> bytes:
    """Outputs as JSON lines, each ending in a newline: ``encode_output`` of each, in one call."""
    return _encoder.encode_lines(outputs)


def rejection(bad: BadInput, raw: bytes, source: dict[str, Any], output_id: str,
              size: int | None = None, digest: str | None = None) -> EventRejected:
    """The rejection of ``raw``: at most its first RAW_KEPT_BYTES (cut where a character ends),
    with the size and digest of the whole. ``size``/``digest``: of the whole input when ``raw`` is
    already only its first bytes (the worker's stand-in for an input too large to carry)."""
    whole_size = len(raw) if size is None else size
    whole_digest = rejection_digest(raw) if digest is None else digest
    kept = raw[:RAW_KEPT_BYTES]
    try:
        text, encoding = _utf8_prefix(kept, whole=len(kept) == whole_size), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(kept).decode("ascii"), "base64"
    return EventRejected(
        id=output_id,
        cause_id=bad.cause_id,
        ts=bad.ts,
        client_id=bad.client_id,
        reason=bad.reason,
        error=bad.error,
        raw=text,
        raw_encoding=encoding,  # type: ignore[arg-type]
        raw_size=whole_size,
        raw_blake2b=whole_digest,
        source=source,
    )


def rejection_digest(raw: bytes) -> str:
    """The 64-bit BLAKE2b of an input's bytes, in hex (``b2sum -l 64`` gives the same): in a
    rejection's id and its ``raw_blake2b``."""
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


def _utf8_prefix(kept: bytes, whole: bool) -> str:
    """``kept`` as text; when it is only the first bytes of an input, without the last
    character if the cut fell inside it."""
    try:
        return kept.decode("utf-8")
    except UnicodeDecodeError as exc:
        if whole or exc.reason != "unexpected end of data":
            raise
        return kept[:exc.start].decode("utf-8")
