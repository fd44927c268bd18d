"""Training configuration: official UniSRec defaults, command-line flags and YAML files."""

import argparse
import dataclasses
import pathlib
import typing
from typing import Any

import yaml

from tf_unisrec.model import STAGES

STRATEGIES = ("default", "mirrored", "multi_worker")


@dataclasses.dataclass
class TrainConfig:
    """Every hyperparameter of a run; defaults are the official UniSRec ones."""

    data: str | None = None
    stage: str = "transductive"
    init: str | None = None
    output: str = "runs/unisrec"
    # Sequence encoder (SASRec).
    hidden_dim: int = 300
    num_layers: int = 2
    num_heads: int = 2
    intermediate_dim: int = 256
    dropout: float = 0.5
    attention_dropout: float = 0.5
    max_length: int = 50
    layer_norm_epsilon: float = 1e-12
    # MoE adaptor.
    num_experts: int = 8
    adaptor_dropout: float = 0.2
    gating: bool = True
    whitening: bool = True
    # Objectives.
    temperature: float = 0.07
    seq_item_weight: float = 1.0
    seq_seq_weight: float = 1e-3
    item_drop_ratio: float = 0.2
    item_drop_prob: float = 0.9
    # Optimisation.
    learning_rate: float = 1e-3
    batch_size: int | None = None
    eval_batch_size: int = 4096
    epochs: int = 300
    patience: int = 10
    steps_per_epoch: int | None = None
    seed: int = 2020
    # Evaluation.
    ks: tuple[int, ...] = (10, 50)
    # Distribution.
    strategy: str = "default"
    cpu_replicas: int = 0

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"--stage must be one of {STAGES}, got {self.stage!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"--strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        self.ks = tuple(int(k) for k in self.ks)
        if self.batch_size is None:
            self.batch_size = 8192 if self.stage == "pretrain" else 2048

    def save(self, path: pathlib.Path) -> None:
        data = dataclasses.asdict(self)
        data["ks"] = list(self.ks)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(yaml.safe_dump(data, sort_keys=False))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | pathlib.Path, **overrides: Any) -> "TrainConfig":
        path = pathlib.Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of option names to values")
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"{path}: unknown options {sorted(unknown)}")
        data.update(overrides)
        return cls(**data)


def _flag_type(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args else annotation


def _parse_bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {value!r}")


def build_parser() -> argparse.ArgumentParser:
    """One `--flag` per `TrainConfig` field, plus `--config FILE.yaml` and `--resume`."""
    parser = argparse.ArgumentParser(
        prog="python -m tf_unisrec.train",
        description="Train UniSRec: pre-train, fine-tune (inductive/transductive) or SASRec.",
    )
    parser.add_argument("--config", help="YAML file of options; flags override it")
    parser.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="continue from the run directory's last checkpoint if it has one",
    )
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        kind = _flag_type(field.type)
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "dest": field.name}
        if kind is bool:
            kwargs["type"] = _parse_bool
        elif typing.get_origin(kind) is tuple:
            kwargs.update(type=int, nargs="+")
        else:
            kwargs["type"] = kind
        if field.name == "stage":
            kwargs["choices"] = STAGES
        if field.name == "strategy":
            kwargs["choices"] = STRATEGIES
        default = field.default
        kwargs["help"] = f"default: {default}"
        parser.add_argument(flag, **kwargs)
    return parser


def parse_args(
    argv: list[str] | None = None, defaults: dict[str, Any] | None = None
) -> tuple[TrainConfig, argparse.Namespace]:
    """Flags over `--config FILE` over `defaults` over the official defaults."""
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if hasattr(args, f.name)
    }
    try:
        if args.config:
            config = TrainConfig.load(args.config, **overrides)
        else:
            config = TrainConfig(**{**(defaults or {}), **overrides})
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    return config, args
