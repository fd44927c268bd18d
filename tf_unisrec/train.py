"""`python -m tf_unisrec.train`: pre-train, fine-tune or train SASRec, then evaluate.

What a run writes is described in `tf_unisrec.run_dir`. With no `--data`, the command runs the
main job instead (`tf_unisrec.main_job`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from data_pipeline.dataset import DatasetDir
from data_pipeline.errors import DataError
from data_pipeline.fileio import out_of_space
from data_pipeline.reader import Augmentation, make_dataset
from tf_unisrec.builder import build_model, restore_transferable
from tf_unisrec.config import STOPPING_METRIC, TrainConfig, parse_flags
from tf_unisrec.evaluate import Evaluator, format_metrics
from tf_unisrec.model import UniSRec
from tf_unisrec.run_dir import RunDir, RunError, checkpoint_read_errors, damaged_checkpoint


def make_strategy(config: TrainConfig) -> tf.distribute.Strategy:
    """The distribution strategy a config asks for; call before any other TensorFlow op."""
    if config.strategy == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if config.strategy == "default":
        return tf.distribute.get_strategy()
    if config.cpu_replicas:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * config.cpu_replicas
        )
        return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(config.cpu_replicas)])
    return tf.distribute.MirroredStrategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
    )


# What a collective raises on the surviving workers once a worker stops: the coordination
# service misses its heartbeats (10 s) or its connection breaks, and every collective aborts.
PEER_ERRORS = (
    tf.errors.UnavailableError,
    tf.errors.AbortedError,
    tf.errors.DeadlineExceededError,
    tf.errors.CancelledError,
)
_PEER = re.compile(r"(?:unhealthy[^:]*:\s*|remote target )/job:(\w+)/replica:\d+/task:(\d+)")


def lost_worker(error: tf.errors.OpError, strategy: tf.distribute.Strategy) -> tuple[str, int]:
    """The worker a multi-worker job lost, as `error` names it, and how many workers it has."""
    cluster = strategy.cluster_resolver.cluster_spec()
    workers = sum(cluster.num_tasks(job) for job in cluster.jobs)
    match = _PEER.search(str(error))
    if match is None:
        return "a worker", workers
    job, task = match[1], int(match[2])
    return f"{job} {task} ({cluster.task_address(job, task)})", workers


def random_generators(model: tf.keras.Model) -> tf.train.Checkpoint:
    """The layers' random generators (dropout masks, gate noise) as one checkpointable object.

    tf-keras keeps them out of checkpoints; saving them lets a resumed run draw the same
    random numbers as an uninterrupted one.
    """
    generators = {}
    random_layers = [
        m for m in model.submodules if isinstance(m, tf.keras.__internal__.layers.BaseRandomLayer)
    ]
    for i, layer in enumerate(random_layers):
        layer._random_generator._maybe_init()
        if layer._random_generator._generator is not None:
            generators[f"generator_{i}"] = layer._random_generator._generator
    return tf.train.Checkpoint(**generators)


EPOCH_LOSS_KEY = "epoch_loss/.ATTRIBUTES/VARIABLE_VALUE"


class GracefulStop:
    """Turns SIGTERM/SIGINT into a flag checked between training steps."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> GracefulStop:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def make_train_step(
    model: UniSRec,
    optimizer: tf.keras.optimizers.Optimizer,
    strategy: tf.distribute.Strategy,
    element_spec: Any,
) -> Callable[[Any], tf.Tensor]:
    """One optimisation step on a (distributed) batch; returns the mean loss over the batch.

    `element_spec` is the distributed dataset's: a fixed signature keeps batches of different
    history widths from tracing the step again.

    Each replica computes its share of the loss over the global batch (`UniSRec.compute_loss`)
    and its gradients; the strategy sums the gradients across replicas when applying them, so
    an R-replica step equals a one-device step on the same global batch.
    """

    def replica_step(batch: dict[str, tf.Tensor]) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = model.compute_loss(batch, training=True)
        variables = model.trainable_variables
        gradients = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return loss

    @tf.function(input_signature=[element_spec])
    def train_step(batch: dict[str, tf.Tensor]) -> tf.Tensor:
        losses = strategy.run(replica_step, args=(batch,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    return train_step


def early_stopping(
    score: float, best: float, bad_epochs: int, patience: int
) -> tuple[float, int, bool, bool]:
    """RecBole's early-stopping rule, one validation score at a time.

    A score at least as good as the best is an improvement and becomes the best; training stops
    once more than `patience` epochs in a row bring none.

    Returns:
        (best score, epochs without improvement, stop, improved).
    """
    if score >= best:
        return score, 0, False, True
    return best, bad_epochs + 1, bad_epochs + 1 > patience, False


def inherit_architecture(config: TrainConfig, given: set[str]) -> TrainConfig:
    """With `--init`, the config with the source run's architecture (see `TrainConfig`)."""
    if not config.init:
        return config
    source, _ = RunDir.resolve_init(config.init)
    return config.with_architecture_of(source.read_config(), given)


class Trainer:
    """Runs one training job described by a `TrainConfig`.

    Args:
        config: the run's settings.
        strategy: the distribution strategy (made first, by `make_strategy`).
        resume: continue from the run folder's last checkpoint, if any.
    """

    def __init__(
        self, config: TrainConfig, strategy: tf.distribute.Strategy, resume: bool = True
    ) -> None:
        self.config = config
        self.resume = resume
        self.strategy = strategy
        self.chief = is_chief(strategy)
        self.run_dir = RunDir(config.output)
        # Every worker resumes from the chief's checkpoints: its own may be an epoch behind
        # when the job stopped between the two saves.
        self.resume_from = self.run_dir
        if not self.chief:
            self.run_dir = self.run_dir.worker(strategy.cluster_resolver.task_id)
        self.run_dir.path.mkdir(parents=True, exist_ok=True)
        self.dataset = DatasetDir.open(config.data, verify=config.verify_data)
        tf.keras.utils.set_random_seed(config.seed)
        tf.keras.backend.experimental.enable_tf_random_generator()
        with strategy.scope():
            self.model: UniSRec = build_model(config, self.dataset)
            if config.init:
                self._start_from(config.init)
            self.optimizer = tf.keras.optimizers.Adam(
                config.learning_rate, epsilon=config.adam_epsilon
            )
            self.optimizer.build(self.model.trainable_variables)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
            self.best_metric = tf.Variable(-1.0, trainable=False, name="best_metric")
            self.best_epoch = tf.Variable(-1, dtype=tf.int64, trainable=False, name="best_epoch")
            self.bad_epochs = tf.Variable(0, dtype=tf.int64, trainable=False, name="bad_epochs")
            # The loss summed over the epoch's steps so far: a resumed epoch logs its whole mean.
            self.epoch_loss = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="epoch_loss")
            state = dict(
                model=self.model,
                optimizer=self.optimizer,
                epoch=self.epoch,
                step=self.step,
                best_metric=self.best_metric,
                best_epoch=self.best_epoch,
                bad_epochs=self.bad_epochs,
                random=random_generators(self.model),
            )
            self.checkpoint = tf.train.Checkpoint(**state, epoch_loss=self.epoch_loss)
            # What every checkpoint holds; the epoch's loss came later.
            self.required_checkpoint = tf.train.Checkpoint(**state)
        # The first step of the epoch that `epoch_loss` covers (not 0 after resuming from a
        # checkpoint without it).
        self.loss_from_step = 0
        self.manager = self.run_dir.checkpoint_manager(self.checkpoint)
        # Pre-training keeps every epoch's weights, so fine-tuning can start from any of them.
        self.best_manager = self.run_dir.best_manager(
            self.model, keep=1 if config.stage_info.validates else None
        )
        self.history: list[dict[str, Any]] = []
        self.writer = tf.summary.create_file_writer(str(self.run_dir.logs))
        self.evaluator = Evaluator(
            self.model,
            self.dataset,
            ks=config.eval_ks,
            batch_size=config.eval_batch_size,
            max_length=config.max_length,
            chunk_size=config.eval_chunk_size,
        )
        element_spec = strategy.experimental_distribute_dataset(self.train_dataset(0)).element_spec
        self.train_step: Callable[[Any], tf.Tensor] = make_train_step(
            self.model, self.optimizer, strategy, element_spec
        )

    def _start_from(self, init: str) -> None:
        """Restores the transferable weights `--init` names and, to fine-tune, freezes."""
        source, prefix = RunDir.resolve_init(init)
        theirs = source.read_config().architecture()
        ours = self.config.architecture()
        if theirs != ours:
            differences = {k: (ours[k], theirs[k]) for k in ours if ours[k] != theirs[k]}
            raise ValueError(
                f"--init {init}: architecture differs from that run's (ours, theirs): {differences}"
            )
        restore_transferable(self.model, prefix)
        if self.config.stage_info.init == "fine_tune":
            self.model.freeze_for_fine_tuning()

    # Training.

    def restore(self) -> bool:
        """Resumes from the latest checkpoint of the run folder, if any."""
        latest = tf.train.latest_checkpoint(str(self.resume_from.checkpoints))
        if latest is None:
            return False
        try:
            status = self.required_checkpoint.restore(latest).assert_existing_objects_matched()
            status.expect_partial()  # the epoch's loss, restored next, is not in this object graph
            if tf.train.load_checkpoint(latest).has_tensor(EPOCH_LOSS_KEY):
                tf.train.Checkpoint(epoch_loss=self.epoch_loss).restore(latest).expect_partial()
            else:
                self.loss_from_step = int(self.step.numpy())
        except checkpoint_read_errors() as error:
            raise RunError(
                damaged_checkpoint(latest, error) + "; or start over with --no-resume"
            ) from None
        # An epoch logged but not checkpointed (killed, or no disk space, in between) is
        # trained again: its first record goes.
        done = int(self.epoch.numpy())
        self.history = [r for r in self.run_dir.read_history() if r["epoch"] <= done]
        return True

    def train_dataset(self, epoch: int) -> tf.data.Dataset:
        config = self.config
        augmentation = None
        if config.uses_seq_seq_view:
            augmentation = Augmentation(config.item_drop_ratio, config.item_drop_prob)
        dataset = make_dataset(
            self.dataset,
            "train",
            batch_size=config.batch_size,
            max_len=config.max_length,
            shuffle=True,
            seed=config.seed + epoch,
            deterministic=True,
            augmentation=augmentation,
            batch_seeds=config.negatives == "sampled",
        )
        if config.steps_per_epoch:
            dataset = dataset.take(config.steps_per_epoch)
        return dataset

    def steps_in_epoch(self) -> int:
        steps = math.ceil(self.dataset.split_rows("train") / self.config.batch_size)
        return min(steps, self.config.steps_per_epoch or steps)

    def run_epoch(self, stop: GracefulStop) -> tuple[float, int, int, float]:
        """Trains one epoch from the saved step.

        Returns:
            The epoch's mean loss (over all its steps, those before a resume included), and
            the examples, steps and seconds trained in this call.
        """
        epoch = int(self.epoch.numpy())
        dataset = self.train_dataset(epoch).skip(int(self.step.numpy()))
        distributed = self.strategy.experimental_distribute_dataset(dataset)
        progress = tf.keras.utils.Progbar(
            self.steps_in_epoch(), stateful_metrics=["loss"], verbose=1 if self.chief else 0
        )
        progress.update(int(self.step.numpy()))
        if int(self.step.numpy()) == 0:
            self.epoch_loss.assign(0.0)
        steps, examples = 0, 0
        start = time.perf_counter()
        for batch in distributed:
            loss = float(self.train_step(batch))
            self.step.assign_add(1)
            self.epoch_loss.assign_add(loss)
            steps += 1
            examples += self.local_batch_size(batch)
            progress.update(int(self.step.numpy()), [("loss", loss)])
            if stop.requested:
                break
        covered = max(int(self.step.numpy()) - self.loss_from_step, 1)
        mean_loss = float(self.epoch_loss.numpy()) / covered
        return mean_loss, examples, steps, time.perf_counter() - start

    def local_batch_size(self, batch: Any) -> int:
        targets = self.strategy.experimental_local_results(batch["target"])
        return int(sum(int(tf.shape(t)[0]) for t in targets))

    def fit(self) -> dict[str, Any]:
        config = self.config
        resumed = self.restore() if self.resume else False
        if resumed:
            print(
                f"resuming {self.resume_from.path} at epoch {int(self.epoch.numpy()) + 1}, "
                f"step {int(self.step.numpy())}",
                flush=True,
            )
        elif self.chief:
            self.run_dir.write_config(config)
        replicas = self.strategy.num_replicas_in_sync
        print(f"training on {replicas} replica{'s' if replicas > 1 else ''}", flush=True)
        train_seconds, train_examples, train_steps, eval_seconds, eval_passes = 0.0, 0, 0, 0.0, 0
        with GracefulStop() as stop:
            while int(self.epoch.numpy()) < config.epochs:
                if int(self.bad_epochs.numpy()) > config.patience:
                    break
                epoch = int(self.epoch.numpy())
                print(f"epoch {epoch + 1}/{config.epochs}", flush=True)
                loss, examples, steps, seconds = self.run_epoch(stop)
                train_seconds += seconds
                train_examples += examples
                train_steps += steps
                if stop.requested:
                    self.manager.save()
                    raise SystemExit(
                        f"stopped by signal at epoch {epoch + 1}, step {int(self.step.numpy())}; "
                        f"checkpoint saved in {self.run_dir.path}; rerun the same command to "
                        "resume"
                    )
                record: dict[str, Any] = {"epoch": epoch + 1, "loss": loss}
                if not config.stage_info.validates:
                    self.best_epoch.assign(epoch)
                    self.best_manager.save(checkpoint_number=epoch + 1)
                else:
                    start = time.perf_counter()
                    valid = self.evaluator("valid")
                    eval_seconds += time.perf_counter() - start
                    eval_passes += 1
                    record.update({f"valid_{k}": v for k, v in valid.items()})
                    print(
                        "  " + "  ".join(f"{k} {v:.4f}" for k, v in record.items() if k != "epoch"),
                        flush=True,
                    )
                    best, bad_epochs, _, improved = early_stopping(
                        valid[STOPPING_METRIC],
                        float(self.best_metric.numpy()),
                        int(self.bad_epochs.numpy()),
                        config.patience,
                    )
                    self.best_metric.assign(best)
                    self.bad_epochs.assign(bad_epochs)
                    if improved:
                        self.best_epoch.assign(epoch)
                        self.best_manager.save(checkpoint_number=epoch + 1)
                self.log_epoch(record)
                self.epoch.assign_add(1)
                self.step.assign(0)
                self.loss_from_step = 0
                self.manager.save()
        return self.finish(train_examples, train_steps, train_seconds, eval_seconds, eval_passes)

    def log_epoch(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        with self.writer.as_default(step=record["epoch"]):
            for key, value in record.items():
                if key != "epoch":
                    tf.summary.scalar(key, value)
        self.run_dir.write_history(self.history)

    def finish(
        self,
        train_examples: int,
        train_steps: int,
        train_seconds: float,
        eval_seconds: float,
        eval_passes: int,
    ) -> dict[str, Any]:
        config = self.config
        best = self.best_manager.latest_checkpoint
        if best:
            tf.train.Checkpoint(model=self.model).restore(best).assert_existing_objects_matched()
        metrics: dict[str, Any] = {
            "stage": config.stage,
            "best_epoch": int(self.best_epoch.numpy()) + 1,
            "epochs_run": int(self.epoch.numpy()),
            "train_examples_per_second": round(train_examples / train_seconds, 1)
            if train_seconds
            else None,
            # At this process's pace: a resumed run trained only part of its epochs here.
            "seconds_per_epoch": round(train_seconds / train_steps * self.steps_in_epoch(), 2)
            if train_seconds and train_steps
            else None,
            "eval_seconds": round(eval_seconds / eval_passes, 3) if eval_passes else None,
        }
        if config.stage_info.validates:
            for split in ("valid", "test"):
                metrics[split] = self.evaluator(split)
            print(format_metrics({s: metrics[s] for s in ("valid", "test")}, config.ks))
        if self.chief:
            self.run_dir.write_metrics(metrics)
        return metrics


def train(
    config: TrainConfig, resume: bool = True, strategy: tf.distribute.Strategy | None = None
) -> dict[str, Any]:
    """Trains (or resumes) the run `config.output` and returns its metrics."""
    strategy = strategy or make_strategy(config)
    return Trainer(config, strategy, resume=resume).fit()


def train_or_explain(
    config: TrainConfig, resume: bool = True, strategy: tf.distribute.Strategy | None = None
) -> dict[str, Any]:
    """`train`, with a failed read of the dataset's shards turned into the damaged file's name,
    a write that found no disk space into one line saying what was kept, and a multi-worker
    job that lost a worker into one line saying how to resume."""
    try:
        return train(config, resume=resume, strategy=strategy)
    except tf.errors.DataLossError as error:
        raise DatasetDir.open(config.data).explain_read_error(error) from None
    except PEER_ERRORS as error:
        if strategy is None or config.strategy != "multi_worker":
            raise
        raise RunDir(config.output).lost_worker_error(*lost_worker(error, strategy)) from None
    except (OSError, tf.errors.OpError) as error:
        reason = out_of_space(error)
        if reason is None or (strategy is not None and not is_chief(strategy)):
            raise
        raise RunDir(config.output).out_of_space_error(error, reason) from None


def main(argv: list[str] | None = None) -> int:
    given, args = parse_flags(sys.argv[1:] if argv is None else argv)
    if "data" not in given:
        from tf_unisrec import main_job

        return main_job.main(given, resume=args.resume)
    try:
        config = TrainConfig.from_dict(given)
        strategy = make_strategy(config)
        config = inherit_architecture(config, set(given))
        print(json.dumps(dataclasses.asdict(config), default=list), flush=True)
        train_or_explain(config, resume=args.resume, strategy=strategy)
    except (DataError, RunError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
