"""The RDMA transport (placeholder while the TCP transport is tested; see git history)."""

from __future__ import annotations

import importlib.util


def unavailable_reason() -> str | None:
    """Why this transport cannot run here, or None when it can."""
    if importlib.util.find_spec("pyverbs") is None:
        return "pyverbs is not installed (the 'rdma' extra: pip install 'squall[rdma]')"
    from pyverbs.device import get_device_list

    if not get_device_list():
        return "pyverbs finds no RDMA device"
    return "the RDMA transport is not built yet"
