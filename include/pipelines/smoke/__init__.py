"""Smoke tests: real requests to a freshly deployed endpoint, the answers checked, not just received.

One module per workload, each with `smoke_test(endpoint_name, *, aws_conn_id=...) -> dict` (a
summary for XCom); it raises SmokeTestFailed with what was wrong.
"""
from __future__ import annotations

import io


class SmokeTestFailed(AssertionError):
    pass


def png_bytes(image) -> bytes:
    """An HxWx3 uint8 array as PNG bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()
