"""Shared fixtures: the real datasets in ../shared/data and a scratch directory."""

import os
import pathlib
import socket

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(
    os.environ.get("TF_UNISREC_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")
)


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The real datasets (Scientific, Office2014, Games) shipped beside the checkout."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def scientific(shared_data, tmp_path_factory) -> pathlib.Path:
    """../shared/data/Scientific built once per session (no text features)."""
    from data_pipeline.build import build

    out = tmp_path_factory.mktemp("scientific") / "data"
    build([[shared_data / "Scientific"]], out)
    return out


@pytest.fixture(scope="session")
def pypi() -> None:
    """Skips a test that downloads MovieLens-100K (the recbole wheel) when PyPI is unreachable."""
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        pytest.skip("no network: MovieLens-100K is downloaded from PyPI (recbole wheel)")
