"""The run folder: the one reader and writer of what a training run leaves on disk.

A run folder holds

- `config.yaml`: the resolved `TrainConfig`, paths absolute, so the run can be evaluated,
  exported or resumed from any working directory;
- `checkpoints/`: the latest training state (model, optimizer, epoch, step, early-stopping
  state, random generators), for resuming;
- `best/`: the model weights of the best validation epoch (in pre-training, of every epoch:
  `best/ckpt-N` is epoch N);
- `logs/`: TensorBoard summaries;
- `history.json`: per-epoch loss and validation metrics;
- `metrics.json`: the final report (best epoch, validation and test metrics, speed).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import shutil
from typing import TYPE_CHECKING, Any

from data_pipeline.fileio import atomic_write, atomic_write_json
from tf_unisrec.config import TrainConfig

if TYPE_CHECKING:
    import tensorflow as tf

    from data_pipeline.dataset import DatasetDir
    from tf_unisrec.model import UniSRec

CONFIG = "config.yaml"
CHECKPOINTS = "checkpoints"
BEST = "best"
LOGS = "logs"
HISTORY = "history.json"
METRICS = "metrics.json"
PATH_OPTIONS = ("data", "init", "output")


class RunError(Exception):
    """A run folder that cannot be used: the message names the folder or file and the fix."""


_UNFINISHED_CHECKPOINT = re.compile(r"^ckpt-([0-9]+)(_temp$|\.)")


def checkpoint_read_errors() -> tuple[type[Exception], ...]:
    """What TensorFlow raises when a checkpoint's files are cut short or corrupt."""
    import tensorflow as tf

    return (tf.errors.OpError, IndexError, OSError, RuntimeError)


def damaged_checkpoint(prefix: str, error: Exception) -> str:
    """One line naming an unreadable checkpoint and what to do."""
    reason = str(getattr(error, "message", error)).splitlines()[0]
    return (
        f"{prefix}: damaged checkpoint ({reason}); train the run again, or resume it from an "
        "intact checkpoint"
    )


class RunDir:
    """A run folder (see the module docstring).

    Args:
        path: the folder; it need not exist yet.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = pathlib.Path(path).absolute()

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def checkpoints(self) -> pathlib.Path:
        return self.path / CHECKPOINTS

    @property
    def best(self) -> pathlib.Path:
        return self.path / BEST

    @property
    def logs(self) -> pathlib.Path:
        return self.path / LOGS

    def worker(self, task_id: int) -> RunDir:
        """Scratch space of a non-chief worker, whose writes nobody reads."""
        return RunDir(self.path / f".worker-{task_id}")

    # config.yaml

    def has_config(self) -> bool:
        return (self.path / CONFIG).is_file()

    def write_config(self, config: TrainConfig) -> TrainConfig:
        """Saves `config` with absolute paths; returns what was saved."""
        resolved = dataclasses.replace(
            config,
            **{
                name: str(pathlib.Path(getattr(config, name)).absolute())
                for name in PATH_OPTIONS
                if getattr(config, name)
            },
        )
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path / CONFIG, resolved.to_yaml())
        return resolved

    def read_config(self) -> TrainConfig:
        path = self.path / CONFIG
        if not path.is_file():
            raise RunError(f"{self.path} is not a run folder (no {CONFIG})")
        try:
            return TrainConfig.from_yaml(path.read_text(encoding="utf-8"), str(path))
        except (TypeError, ValueError, UnicodeDecodeError) as error:
            reason = str(error).splitlines()[0].removeprefix(f"{path}: ")
            raise RunError(f"{path}: {reason}; the run folder is damaged: train it again") from None

    # history.json and metrics.json

    def read_history(self) -> list[dict[str, Any]]:
        return self._read_json(HISTORY, default=[])

    def write_history(self, history: list[dict[str, Any]]) -> None:
        atomic_write_json(self.path / HISTORY, history)

    def has_metrics(self) -> bool:
        return (self.path / METRICS).is_file()

    def read_metrics(self) -> dict[str, Any]:
        return self._read_json(METRICS)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        atomic_write_json(self.path / METRICS, metrics)

    def _read_json(self, name: str, default: Any = None) -> Any:
        path = self.path / name
        if not path.is_file():
            if default is not None:
                return default
            raise RunError(f"{path} is missing: the run has not finished")
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise RunError(f"{path}: unreadable ({error}); rerun the training command") from None

    # Checkpoints.

    def checkpoint_manager(self, checkpoint: tf.train.Checkpoint) -> tf.train.CheckpointManager:
        """The latest training state, one kept."""
        import tensorflow as tf

        return tf.train.CheckpointManager(checkpoint, str(self.checkpoints), max_to_keep=1)

    def best_manager(self, model: UniSRec, keep: int | None = 1) -> tf.train.CheckpointManager:
        """The best weights (`keep` of them; None keeps all, one per epoch)."""
        import tensorflow as tf

        checkpoint = tf.train.Checkpoint(model=model)
        return tf.train.CheckpointManager(checkpoint, str(self.best), max_to_keep=keep)

    def remove_unfinished_checkpoints(self) -> list[pathlib.Path]:
        """Removes what a checkpoint save that failed midway left in checkpoints/ and best/.

        A save writes `ckpt-N_temp/`, merges it into `ckpt-N.*` and only then records `ckpt-N`
        in the folder's `checkpoint` file, so `_temp` folders and files of checkpoints newer
        than the last recorded one belong to no finished save.
        """
        import tensorflow as tf

        removed = []
        for folder in (self.checkpoints, self.best):
            if not folder.is_dir():
                continue
            latest = tf.train.latest_checkpoint(str(folder))
            newest = int(latest.rsplit("-", 1)[1]) if latest else 0
            for path in folder.iterdir():
                match = _UNFINISHED_CHECKPOINT.match(path.name)
                if match and (match[2] == "_temp" or int(match[1]) > newest):
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
                    removed.append(path)
        return removed

    def out_of_space_error(self, error: BaseException, reason: str) -> RunError:
        """The one line for a write of the run that found no room; cleans up after it first."""
        import tensorflow as tf

        self.remove_unfinished_checkpoints()
        text = str(error)
        what = next(
            (f"{name} in {folder}" for name, folder in
             (("a checkpoint", self.checkpoints), ("the best weights", self.best))
             if str(folder) in text),
            f"the run folder {self.path}",
        )  # fmt: skip
        latest = tf.train.latest_checkpoint(str(self.checkpoints))
        kept = (
            f"the last checkpoint, {latest}, is intact: free space and rerun the same command to "
            "resume from it"
            if latest
            else "no checkpoint had been written yet: free space and rerun the same command"
        )
        return RunError(f"out of disk space writing {what} ({reason}); {kept}")

    def lost_worker_error(self, worker: str, workers: int) -> RunError:
        """The one line for a multi-worker job that lost `worker` (of `workers`) mid-training."""
        import tensorflow as tf

        restart = f"restart all {workers} workers with the same command"
        latest = tf.train.latest_checkpoint(str(self.checkpoints))
        if latest is None:
            then = f"{restart} to train from the start (no checkpoint had been written yet)"
        else:
            reader = tf.train.load_checkpoint(latest)
            epoch = int(reader.get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE"))
            step = int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))
            at = f"epoch {epoch + 1}, step {step}" if step else f"the end of epoch {epoch}"
            then = f"{restart} to resume from the last checkpoint, {latest}, saved at {at}"
        return RunError(f"{worker} of the cluster stopped responding; the job stopped: {then}")

    def best_checkpoint(self) -> str:
        """The prefix of the best weights."""
        import tensorflow as tf

        prefix = tf.train.latest_checkpoint(str(self.best))
        if prefix is None:
            raise RunError(f"{self.best} holds no checkpoint: the run has not finished an epoch")
        return prefix

    def load_model(self, strict: bool = True) -> tuple[TrainConfig, DatasetDir, UniSRec]:
        """The run's config, its dataset and its model with the best weights.

        Args:
            strict: every variable of the model must be in the checkpoint, and every weight of
                the checkpoint must be used (a checkpoint of another model is an error).
        """
        import tensorflow as tf

        from data_pipeline.dataset import DatasetDir
        from tf_unisrec.builder import build_model

        config = self.read_config()
        if not config.data:
            raise RunError(f"{self.path / CONFIG} names no dataset (data: ...)")
        dataset = DatasetDir.open(config.data)
        model = build_model(config, dataset)
        prefix = self.best_checkpoint()
        try:
            status = tf.train.Checkpoint(model=model).restore(prefix)
            if strict:
                status.assert_consumed()
            else:
                status.assert_existing_objects_matched()
        except (AssertionError, ValueError) as error:
            raise RunError(
                f"{prefix} does not match the model {self.path / CONFIG} describes: {error}"
            ) from None
        except checkpoint_read_errors() as error:
            raise RunError(damaged_checkpoint(prefix, error)) from None
        return config, dataset, model

    @staticmethod
    def resolve_init(init: str | os.PathLike) -> tuple[RunDir, str]:
        """The run and checkpoint prefix `--init` names: a run folder, or a prefix inside one.

        A run folder gives its best weights (the last epoch of a pre-training), or its latest
        checkpoint when it has no best weights yet.
        """
        import tensorflow as tf

        path = pathlib.Path(init).absolute()
        if path.is_dir():
            run = RunDir(path)
            prefix = tf.train.latest_checkpoint(str(run.best)) or tf.train.latest_checkpoint(
                str(run.checkpoints)
            )
            if prefix is None:
                raise RunError(f"--init {init}: no checkpoint under best/ or checkpoints/")
        elif tf.io.gfile.glob(str(path) + ".index") and path.parent.name in (BEST, CHECKPOINTS):
            run, prefix = RunDir(path.parent.parent), str(path)
        else:
            raise RunError(f"--init {init}: not a run folder or a checkpoint prefix inside one")
        if not run.has_config():
            raise RunError(f"--init {init}: {run.path} is not a run folder (no {CONFIG})")
        return run, prefix
