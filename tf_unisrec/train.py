"""`python -m tf_unisrec.train`: pre-train, fine-tune or train SASRec, then evaluate.

A run directory holds `config.yaml`, `checkpoints/` (the latest state, for resuming),
`best/` (the weights of the best validation epoch), `logs/` (TensorBoard), `history.json`
(per-epoch validation metrics) and `metrics.json`.
"""

import dataclasses
import json
import math
import os
import pathlib
import signal
import sys
import time
from typing import Any

import tensorflow as tf

from data_pipeline.dataset import DatasetInfo, load_dataset
from data_pipeline.errors import DataError
from data_pipeline.reader import make_dataset
from tf_unisrec.config import TrainConfig, parse_args
from tf_unisrec.evaluate import evaluate, format_metrics
from tf_unisrec.model import UniSRec
from tf_unisrec.modeling import build_model, load_pretrained


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


class GracefulStop:
    """Turns SIGTERM/SIGINT into a flag checked between training steps."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "GracefulStop":
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Trainer:
    """Runs one training job described by a `TrainConfig`."""

    def __init__(
        self, config: TrainConfig, strategy: tf.distribute.Strategy, resume: bool = True
    ) -> None:
        self.config = config
        self.resume = resume
        self.strategy = strategy
        self.chief = is_chief(strategy)
        self.run_dir = pathlib.Path(config.output)
        if not self.chief:
            self.run_dir = self.run_dir / f".worker-{strategy.cluster_resolver.task_id}"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.info: DatasetInfo = load_dataset(config.data)
        tf.keras.utils.set_random_seed(config.seed)
        tf.keras.backend.experimental.enable_tf_random_generator()
        with strategy.scope():
            self.model: UniSRec = build_model(config, self.info)
            if config.init and config.stage != "pretrain":
                load_pretrained(self.model, config.init)
                self.model.freeze_for_fine_tuning()
            self.optimizer = tf.keras.optimizers.Adam(config.learning_rate)
            self.optimizer.build(self.model.trainable_variables)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
            self.best_metric = tf.Variable(-1.0, trainable=False, name="best_metric")
            self.best_epoch = tf.Variable(-1, dtype=tf.int64, trainable=False, name="best_epoch")
            self.bad_epochs = tf.Variable(0, dtype=tf.int64, trainable=False, name="bad_epochs")
            self.checkpoint = tf.train.Checkpoint(
                model=self.model,
                optimizer=self.optimizer,
                epoch=self.epoch,
                step=self.step,
                best_metric=self.best_metric,
                best_epoch=self.best_epoch,
                bad_epochs=self.bad_epochs,
                random=random_generators(self.model),
            )
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(self.run_dir / "checkpoints"), max_to_keep=1
        )
        self.best_manager = tf.train.CheckpointManager(
            tf.train.Checkpoint(model=self.model), str(self.run_dir / "best"), max_to_keep=1
        )
        self.history_path = self.run_dir / "history.json"
        self.history: list[dict[str, Any]] = []
        self.writer = tf.summary.create_file_writer(str(self.run_dir / "logs"))
        self._train_step = None

    # Training.

    def restore(self) -> bool:
        """Resumes from the latest checkpoint of the run directory, if any."""
        latest = self.manager.latest_checkpoint
        if latest is None:
            return False
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        if self.history_path.exists():
            self.history = json.loads(self.history_path.read_text())
        return True

    def train_dataset(self, epoch: int) -> tf.data.Dataset:
        config = self.config
        dataset = make_dataset(
            self.info.path,
            "train",
            batch_size=config.batch_size,
            max_len=config.max_length,
            shuffle=True,
            seed=config.seed + epoch,
            deterministic=True,
            augment=config.stage == "pretrain" and config.seq_seq_weight > 0,
            item_drop_ratio=config.item_drop_ratio,
            item_drop_prob=config.item_drop_prob,
        )
        if config.steps_per_epoch:
            dataset = dataset.take(config.steps_per_epoch)
        return dataset

    def steps_in_epoch(self) -> int:
        steps = math.ceil(self.info.manifest["splits"]["train"] / self.config.batch_size)
        return min(steps, self.config.steps_per_epoch or steps)

    def _build_train_step(self, element_spec: Any) -> Any:
        model, optimizer, strategy = self.model, self.optimizer, self.strategy

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

    def run_epoch(self, stop: GracefulStop) -> tuple[float, int, float]:
        """Trains one epoch from the saved step; returns mean loss, examples and seconds."""
        epoch = int(self.epoch.numpy())
        dataset = self.train_dataset(epoch).skip(int(self.step.numpy()))
        distributed = self.strategy.experimental_distribute_dataset(dataset)
        if self._train_step is None:
            self._train_step = self._build_train_step(distributed.element_spec)
        progress = tf.keras.utils.Progbar(
            self.steps_in_epoch(), stateful_metrics=["loss"], verbose=1 if self.chief else 0
        )
        progress.update(int(self.step.numpy()))
        total_loss, steps, examples = 0.0, 0, 0
        start = time.perf_counter()
        for batch in distributed:
            loss = float(self._train_step(batch))
            self.step.assign_add(1)
            total_loss += loss
            steps += 1
            examples += self.local_batch_size(batch)
            progress.update(int(self.step.numpy()), [("loss", loss)])
            if stop.requested:
                break
        return total_loss / max(steps, 1), examples, time.perf_counter() - start

    def local_batch_size(self, batch: Any) -> int:
        targets = self.strategy.experimental_local_results(batch["target"])
        return int(sum(int(tf.shape(t)[0]) for t in targets))

    def fit(self) -> dict[str, Any]:
        config = self.config
        resumed = self.restore() if self.resume else False
        if resumed:
            print(
                f"resuming {self.run_dir} at epoch {int(self.epoch.numpy()) + 1}, "
                f"step {int(self.step.numpy())}",
                flush=True,
            )
        elif self.chief:
            config.save(self.run_dir / "config.yaml")
        replicas = self.strategy.num_replicas_in_sync
        print(f"training on {replicas} replica{'s' if replicas > 1 else ''}", flush=True)
        train_seconds, train_examples, eval_seconds, eval_passes = 0.0, 0, 0.0, 0
        with GracefulStop() as stop:
            while int(self.epoch.numpy()) < config.epochs:
                if int(self.bad_epochs.numpy()) >= config.patience:
                    break
                epoch = int(self.epoch.numpy())
                print(f"epoch {epoch + 1}/{config.epochs}", flush=True)
                loss, examples, seconds = self.run_epoch(stop)
                train_seconds += seconds
                train_examples += examples
                if stop.requested:
                    self.manager.save()
                    raise SystemExit(
                        f"stopped by signal at epoch {epoch + 1}, step {int(self.step.numpy())}; "
                        f"checkpoint saved in {self.run_dir}; rerun the same command to resume"
                    )
                record: dict[str, Any] = {"epoch": epoch + 1, "loss": loss}
                if config.stage == "pretrain":
                    self.best_epoch.assign(epoch)
                    self.best_manager.save(checkpoint_number=epoch + 1)
                else:
                    start = time.perf_counter()
                    valid = evaluate(
                        self.model,
                        self.info,
                        "valid",
                        ks=config.ks,
                        batch_size=config.eval_batch_size,
                        max_length=config.max_length,
                    )
                    eval_seconds += time.perf_counter() - start
                    eval_passes += 1
                    record.update({f"valid_{k}": v for k, v in valid.items()})
                    print(
                        "  " + "  ".join(f"{k} {v:.4f}" for k, v in record.items() if k != "epoch"),
                        flush=True,
                    )
                    metric = valid[f"ndcg@{config.ks[0]}"]
                    if metric > float(self.best_metric.numpy()):
                        self.best_metric.assign(metric)
                        self.best_epoch.assign(epoch)
                        self.bad_epochs.assign(0)
                        self.best_manager.save(checkpoint_number=epoch + 1)
                    else:
                        self.bad_epochs.assign_add(1)
                self.log_epoch(record)
                self.epoch.assign_add(1)
                self.step.assign(0)
                self.manager.save()
        return self.finish(train_examples, train_seconds, eval_seconds, eval_passes)

    def log_epoch(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        with self.writer.as_default(step=record["epoch"]):
            for key, value in record.items():
                if key != "epoch":
                    tf.summary.scalar(key, value)
        write_json(self.history_path, self.history)

    def finish(
        self, train_examples: int, train_seconds: float, eval_seconds: float, eval_passes: int
    ) -> dict[str, Any]:
        config = self.config
        best = self.best_manager.latest_checkpoint
        if best:
            tf.train.Checkpoint(model=self.model).restore(best).expect_partial()
        metrics: dict[str, Any] = {
            "stage": config.stage,
            "best_epoch": int(self.best_epoch.numpy()) + 1,
            "epochs_run": int(self.epoch.numpy()),
            "train_examples_per_second": round(train_examples / train_seconds, 1)
            if train_seconds
            else None,
            "seconds_per_epoch": round(train_seconds / max(len(self.history), 1), 2)
            if train_seconds
            else None,
            "eval_seconds": round(eval_seconds / eval_passes, 3) if eval_passes else None,
        }
        if config.stage != "pretrain":
            for split in ("valid", "test"):
                results = evaluate(
                    self.model,
                    self.info,
                    split,
                    ks=config.ks,
                    batch_size=config.eval_batch_size,
                    max_length=config.max_length,
                )
                metrics[split] = results
            print(format_metrics({s: metrics[s] for s in ("valid", "test")}, config.ks))
        if self.chief:
            write_json(self.run_dir / "metrics.json", metrics)
        return metrics


def write_json(path: pathlib.Path, data: Any) -> None:
    """Writes JSON atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def train(
    config: TrainConfig, resume: bool = True, strategy: tf.distribute.Strategy | None = None
) -> dict[str, Any]:
    """Trains (or resumes) the run `config.output` and returns its metrics."""
    strategy = strategy or make_strategy(config)
    return Trainer(config, strategy, resume=resume).fit()


# The main job on a fresh machine: MovieLens-100K and a small, quick model.
DEFAULT_JOB = {
    "stage": "transductive",
    "output": "runs/movielens",
    "hidden_dim": 64,
    "max_length": 30,
    "epochs": 3,
}


def default_dataset() -> str:
    """Builds MovieLens-100K and its MiniLM text features in the cache, if missing."""
    from data_pipeline.build import build
    from data_pipeline.encode_text import encode_dataset
    from data_pipeline.sources.movielens import cache_dir

    data_dir = cache_dir() / "datasets" / "ml-100k"
    print(f"dataset: MovieLens-100K in {data_dir}", flush=True)
    build([], data_dir)
    encode_dataset(data_dir)
    return str(data_dir)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    config, args = parse_args(argv)
    strategy = make_strategy(config)
    default_job = config.data is None
    if default_job:
        config, args = parse_args(argv, defaults={**DEFAULT_JOB, "data": default_dataset()})
    print(json.dumps(dataclasses.asdict(config), default=list), flush=True)
    try:
        metrics = train(config, resume=args.resume, strategy=strategy)
    except (DataError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if default_job and is_chief(strategy):
        report_default_job(config, metrics)
    return 0


def report_default_job(config: TrainConfig, metrics: dict[str, Any]) -> None:
    """Exports the run for TF-Serving and prints where everything went."""
    from data_pipeline.dataset import load_dataset
    from export.saved_model import export_saved_model

    run = pathlib.Path(config.output).resolve()
    base_path = run / "serving" / "unisrec"
    export = export_saved_model(run, base_path)
    example = " ".join(str(i) for i in load_dataset(config.data).item_ids[1:3])
    print()
    print(
        f"test recall@10 {metrics['test']['recall@10']:.4f}, ndcg@10 "
        f"{metrics['test']['ndcg@10']:.4f} (full ranking over all items)"
    )
    print(f"run directory      {run}")
    print(f"metrics            {run / 'metrics.json'}")
    print(f"TensorBoard        tensorboard --logdir {run / 'logs'}")
    print(f"SavedModel         {export.path}  ({', '.join(export.signatures)})")
    print(f"TF-Serving config  {export.models_config}")
    print(
        f"serve locally      python -m export.serve --port 8500 --model_name unisrec "
        f"--model_base_path {base_path}"
    )
    print(
        f"query              python -m export.client --server 127.0.0.1:8500 --model unisrec "
        f"--history {example} --k 10"
    )


if __name__ == "__main__":
    sys.exit(main())
