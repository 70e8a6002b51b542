"""Event models, validation and codecs: the wire contract of docs/events.md."""
