"""Event models, validation and codecs: the wire contract of docs/events.md.

The field checks (``fields``, ``timefmt``, ``checks``) and the codec run compiled when the build
is fresh (schemas.compiled); ``BUILD`` says which, and why."""

from schemas.compiled import attach

BUILD = attach(__path__, "schemas")
