"""The fixtures the notebook's tests share (pytest finds them here); the
helpers they call (kernels, what cells showed) are in kernels.py, and the
browser harness in browser.py."""

import os
from collections.abc import Callable

import pytest


@pytest.fixture
def s3_store(tmp_path, monkeypatch) -> Callable[[str], str]:
    """Makes store URLs in the SeaweedFS bucket that .ci/run starts (the
    test is skipped without one, except under CI), with the kernels'
    environment set to reach it: ``s3_store("name")``."""
    endpoint = os.environ.get("PRAGMA_TEST_S3_ENDPOINT")
    if not endpoint:
        assert not os.environ.get("CI"), "under CI .ci/run starts SeaweedFS"
        pytest.skip("PRAGMA_TEST_S3_ENDPOINT is not set (see scripts/start-seaweedfs)")
    # A kernel takes its environment from here.
    monkeypatch.setenv("AWS_ENDPOINT", endpoint)
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    bucket = os.environ.get("PRAGMA_TEST_S3_BUCKET", "pragma")
    return lambda name: f"s3://{bucket}/{name}-{os.getpid()}-{tmp_path.name}"
