"""Event models, validation and codecs: the wire contract of shared/spec/events.md."""
