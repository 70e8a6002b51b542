"""The versions of the worker and what it runs on, for `rewards --version`, the ready line, the
status page and ``rewards_build_info``. Nothing else: it imports no library of the data path."""

from __future__ import annotations

import platform


def versions() -> dict[str, str]:
    """python, rewards, faust_streaming, aiokafka: each package's installed version, or "unknown"."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("rewards", "faust-streaming", "aiokafka"):
        try:
            found[package.replace("-", "_")] = version(package)
        except PackageNotFoundError:
            found[package.replace("-", "_")] = "unknown"
    return found


def version_line() -> str:
    """``rewards --version``: one line of the same versions."""
    found = versions()
    return (f"rewards {found['rewards']} (Python {found['python']}, aiokafka {found['aiokafka']}, "
            f"faust-streaming {found['faust_streaming']})")
