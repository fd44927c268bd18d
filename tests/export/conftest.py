"""Fixtures shared by the serving tests."""

import pathlib

import pytest

from .toy_model import write_toy_saved_model


@pytest.fixture(scope="module")
def toy_base_path(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A model base path holding version 1 of the toy recommender."""
    base = tmp_path_factory.mktemp("toy_model")
    write_toy_saved_model(str(base), 1)
    return base
