"""Smoke tests: real requests to a freshly deployed endpoint, the answers checked, not just received.

One module per workload, each with `smoke_test(endpoint_name, *, aws_conn_id=...) -> dict` (a
summary for XCom); it raises SmokeTestFailed with what was wrong.

They run in Airflow, which has only requirements.txt: numpy and the standard library build their
request bodies; the two that need an encoder of their own (JPEG, mp4) import it through
`encoder_library`, which says what to install when it is missing.
"""
from __future__ import annotations

import importlib
import struct
import zlib


class SmokeTestFailed(AssertionError):
    pass


def invoke_endpoint(endpoint_name: str, body: bytes, *, content_type: str, accept: str = "application/json",
                    aws_conn_id: str | None = "aws_default") -> tuple[str, bytes, str]:
    """Invoke an endpoint; returns (content type, body, the variant that answered)."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    runtime = AwsBaseHook(aws_conn_id=aws_conn_id, client_type="sagemaker-runtime").get_conn()
    response = runtime.invoke_endpoint(EndpointName=endpoint_name, Body=body, ContentType=content_type, Accept=accept)
    return response["ContentType"], response["Body"].read(), response.get("InvokedProductionVariant", "")


def encoder_library(module: str, package: str, needed_by: str):
    """Import `module` for a request body a smoke test encodes, or fail saying which package Airflow lacks."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ModuleNotFoundError(
            f"{needed_by} needs {package}, which this Airflow environment lacks: add {package} (pinned in "
            f"constraints.txt) to the Airflow requirements, as the end of requirements.txt says") from error


def png_bytes(image) -> bytes:
    """An HxWx3 uint8 array as PNG bytes: 8-bit RGB, every row unfiltered, written with zlib alone."""
    import numpy as np

    pixels = np.ascontiguousarray(image, dtype=np.uint8)
    height, width, channels = pixels.shape
    if channels != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {pixels.shape}")

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + row.tobytes() for row in pixels)  # filter type 0 before each row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, truecolour, deflate, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")
