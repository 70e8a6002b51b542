"""The pure rule engine: no I/O, no clock, no randomness, no float, no faust."""
