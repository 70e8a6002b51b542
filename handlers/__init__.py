"""The pure rule engine: no I/O, no clock, no randomness, no float, no faust.

Its modules run compiled (mypyc) when ``make setup`` could build them and the build is of
exactly these sources; otherwise as Python source, with the same outputs (schemas.compiled).
``BUILD`` says which, and why."""

from schemas.compiled import attach

BUILD = attach(__path__, "handlers")
