"""What a training run is: the stage table and `TrainConfig`, with its flags and YAML files.

Every default of a run lives here, with the help text its flag shows. Imports no TensorFlow,
so reading or checking a configuration is cheap.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

import yaml


@dataclasses.dataclass(frozen=True)
class Stage:
    """What one value of `--stage` means.

    Attributes:
        name: the flag value.
        item_mode: what an item vector is made of: "text" (MoE adaptor over frozen text
            vectors), "text+id" (plus a learned ID embedding) or "id" (the ID embedding alone).
        objective: "contrastive" (in-batch `L_SI + lambda * L_SS`, no validation) or
            "full_softmax" (cross-entropy over the whole catalogue, early stopping on validation).
        scoring: "cosine" (L2-normalised vectors, temperature 0.07: UniSRec) or "dot" (raw dot
            products, no temperature: RecBole's SASRec).
        default_batch_size: the official global batch size.
        init: what `--init RUN` does: "warm_start" (start from RUN's adaptor and sequence
            encoder, train everything), "fine_tune" (the same, then freeze positions and
            transformer blocks: parameter-efficient fine-tuning) or "none" (refused).
        doc: one line for `--help`.
    """

    name: str
    item_mode: str
    objective: str
    scoring: str
    default_batch_size: int
    init: str
    doc: str

    @property
    def validates(self) -> bool:
        """Whether epochs are scored on the validation split (early stopping, best weights)."""
        return self.objective == "full_softmax"


STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        Stage(
            "pretrain", "text", "contrastive", "cosine", 8192, "warm_start",
            "multi-domain pre-training, L = L_SI + lambda * L_SS",
        ),
        Stage(
            "inductive", "text", "full_softmax", "cosine", 2048, "fine_tune",
            "UniSRec from item text alone; new items need no training",
        ),
        Stage(
            "transductive", "text+id", "full_softmax", "cosine", 2048, "fine_tune",
            "UniSRec from item text plus a learned ID embedding",
        ),
        Stage(
            "sasrec", "id", "full_softmax", "dot", 2048, "none",
            "SASRec over item IDs as RecBole trains it, the baseline",
        ),
    )
}  # fmt: skip
STRATEGIES = ("default", "mirrored", "multi_worker")
SCORINGS = ("cosine", "dot")
WHITENINGS = ("parametric", "none", "bert")
NEGATIVES = ("full", "in-batch", "sampled")
SAMPLINGS = ("uniform", "popularity")
WHITENING_INITS = ("random", "bert")
TEMPERATURES = {"cosine": 0.07, "dot": 1.0}
STOPPING_METRIC = "ndcg@10"


def option(default: Any, help: str, *, architecture: bool = False, choices: Any = None) -> Any:
    """A `TrainConfig` field with its flag's help text.

    `architecture` marks fields that fix the shape of the weights, which `--init` takes from
    the source run.
    """
    metadata = {"help": help, "architecture": architecture, "choices": choices}
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class TrainConfig:
    """Every setting of a run; defaults are the official UniSRec ones."""

    data: str | None = option(None, "dataset folder written by python -m data_pipeline.build")
    verify_data: bool = option(
        False,
        "check every dataset file against its sha256 before training (otherwise only when a "
        "read fails)",
    )
    stage: str = option(
        "transductive",
        "what to train: " + "; ".join(f"{s.name}: {s.doc}" for s in STAGES.values()),
        choices=tuple(STAGES),
    )
    init: str | None = option(
        None,
        "a run folder (or a checkpoint prefix inside one) to start from: pretrain continues "
        "from it, inductive/transductive fine-tune its adaptor with positions and transformer "
        "frozen; its architecture is taken over",
    )
    output: str = option("runs/unisrec", "run folder to write (or resume)")
    # Sequence encoder (SASRec).
    hidden_dim: int = option(300, "size of item and sequence vectors", architecture=True)
    num_layers: int = option(2, "transformer blocks", architecture=True)
    num_heads: int = option(2, "attention heads per block", architecture=True)
    intermediate_dim: int = option(256, "feed-forward width of a block", architecture=True)
    dropout: float = option(0.5, "dropout of the sequence encoder's hidden states")
    attention_dropout: float = option(0.5, "dropout of the attention weights")
    max_length: int = option(
        50, "histories keep their last N items (the position table's size)", architecture=True
    )
    layer_norm_epsilon: float = option(1e-12, "LayerNorm epsilon", architecture=True)
    # MoE adaptor.
    num_experts: int = option(8, "experts of the MoE adaptor", architecture=True)
    adaptor_dropout: float = option(0.2, "dropout of text vectors entering the adaptor")
    gating: bool = option(
        True, "learned gate over experts (false: plain average)", architecture=True
    )
    whitening: str = option(
        "parametric",
        "each expert's map: parametric, the learned (x - b) W; none, a learned x W (the w/o "
        "whitening ablation); bert, one fixed BERT-whitening (x - mu) W_k of the items' text "
        "vectors (the non-parametric baseline; needs --num-experts 1 --gating false)",
        architecture=True,
        choices=WHITENINGS,
    )
    whitening_init: str = option(
        "random",
        "how the experts start: random (W ~ N(0, 0.02), b = 0, as the official code) or bert "
        "(b = mu, W = W_k of BERT-whitening, rotated differently per expert)",
        choices=WHITENING_INITS,
    )
    # Objectives.
    scoring: str | None = option(
        None,
        "cosine (L2-normalised vectors, as UniSRec) or dot (raw dot products, as RecBole's "
        "SASRec); default: the stage's (dot for sasrec, cosine otherwise)",
        choices=SCORINGS,
    )
    temperature: float | None = option(
        None, "softmax temperature of every loss; default: 0.07 with cosine, 1 (none) with dot"
    )
    seq_item_weight: float = option(
        1.0, "weight of L_SI in pre-training (0: the w/o L_SI ablation)"
    )
    seq_seq_weight: float = option(1e-3, "lambda, weight of L_SS in pre-training (0: w/o L_SS)")
    negatives: str = option(
        "full",
        "candidates of the fine-tuning softmax: full (every item, the paper's setting; a step "
        "costs O(catalogue)), in-batch (the batch's targets) or sampled (plus --num-negatives "
        "per step); both logQ-corrected, and their steps cost O(batch)",
        choices=NEGATIVES,
    )
    num_negatives: int = option(1024, "items sampled per step with --negatives sampled")
    sampling: str = option(
        "uniform",
        "how --negatives sampled draws: uniform over the catalogue or popularity (by how often "
        "an item is a training target)",
        choices=SAMPLINGS,
    )
    item_drop_ratio: float = option(0.2, "share of items dropped from the L_SS view")
    item_drop_prob: float = option(0.9, "probability of item drop (else word drop) per batch")
    # Optimisation.
    learning_rate: float = option(1e-3, "Adam learning rate")
    adam_epsilon: float = option(1e-8, "Adam epsilon (PyTorch's default, as in the official code)")
    batch_size: int | None = option(
        None, "global batch size (default: the stage's; pretrain 8192, the others 2048)"
    )
    eval_batch_size: int = option(4096, "histories per batch in full-ranking evaluation")
    eval_chunk_size: int = option(
        8192,
        "items adapted and scored at once in full-ranking evaluation, with a running top-K: "
        "memory stays bounded by eval-batch-size x this, whatever the catalogue size",
    )
    epochs: int = option(300, "most epochs to train")
    patience: int = option(
        10,
        "early stopping as RecBole: stop when more than N epochs pass without a validation "
        "NDCG@10 at least as good as the best",
    )
    steps_per_epoch: int | None = option(None, "cap on steps per epoch (default: the whole split)")
    seed: int = option(2020, "seed of initialisation, data order, dropout and augmentation")
    # Evaluation.
    ks: tuple[int, ...] = option(
        (10, 50), "cut-offs K of Recall@K and NDCG@K (NDCG@10, the stopping metric, always)"
    )
    # Distribution.
    strategy: str = option(
        "default",
        "one device (default), all local GPUs (mirrored; or --cpu-replicas) or the machines "
        "named in TF_CONFIG (multi_worker)",
        choices=STRATEGIES,
    )
    cpu_replicas: int = option(0, "with --strategy mirrored and no GPU: split the CPU in N")

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"--stage must be one of {tuple(STAGES)}, got {self.stage!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"--strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.init and STAGES[self.stage].init == "none":
            raise ValueError(f"--stage {self.stage} trains from scratch: it takes no --init")
        self.ks = tuple(int(k) for k in self.ks)
        if isinstance(self.whitening, bool) or self.whitening in ("true", "false"):
            # Configurations written before whitening had a third choice.
            self.whitening = "parametric" if self.whitening in (True, "true") else "none"
        if self.whitening not in WHITENINGS:
            raise ValueError(f"--whitening must be one of {WHITENINGS}, got {self.whitening!r}")
        if self.whitening == "bert" and (self.num_experts != 1 or self.gating):
            raise ValueError(
                "--whitening bert is one fixed map: give --num-experts 1 --gating false"
            )
        if self.whitening_init not in WHITENING_INITS:
            raise ValueError(f"--whitening-init must be one of {WHITENING_INITS}")
        if self.batch_size is None:
            self.batch_size = STAGES[self.stage].default_batch_size
        if self.scoring is None:
            self.scoring = STAGES[self.stage].scoring
        if self.scoring not in SCORINGS:
            raise ValueError(f"--scoring must be one of {SCORINGS}, got {self.scoring!r}")
        if self.scoring != "cosine" and STAGES[self.stage].objective == "contrastive":
            raise ValueError(f"--stage {self.stage} scores by cosine: it takes no --scoring dot")
        if self.temperature is None:
            self.temperature = TEMPERATURES[self.scoring]
        if self.negatives not in NEGATIVES or self.sampling not in SAMPLINGS:
            raise ValueError(f"--negatives must be one of {NEGATIVES}, --sampling of {SAMPLINGS}")
        if self.negatives != "full" and STAGES[self.stage].objective != "full_softmax":
            raise ValueError(f"--stage {self.stage} has in-batch negatives: no --negatives")
        if self.num_negatives < 1:
            raise ValueError(f"--num-negatives must be positive, got {self.num_negatives}")

    @property
    def stage_info(self) -> Stage:
        return STAGES[self.stage]

    @property
    def uses_seq_seq_view(self) -> bool:
        """Whether training needs the augmented view (and so the word-drop text table)."""
        return self.stage_info.objective == "contrastive" and self.seq_seq_weight > 0

    @property
    def eval_ks(self) -> tuple[int, ...]:
        """The cut-offs evaluated: `ks` and the stopping metric's 10."""
        return tuple(sorted({*self.ks, int(STOPPING_METRIC.split("@")[1])}))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["ks"] = list(self.ks)
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: Any, source: str = "configuration", **overrides: Any) -> TrainConfig:
        """A config from a mapping of option names (YAML keys) to values, checked."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a mapping of option names to values")
        unknown = set(data) - set(FIELDS)
        if unknown:
            raise ValueError(f"{source}: unknown options {sorted(unknown)}")
        return cls(**{**data, **overrides})

    @classmethod
    def from_yaml(cls, text: str, source: str = "configuration", **overrides: Any) -> TrainConfig:
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"{source}: not valid YAML ({error})") from None
        return cls.from_dict(data, source, **overrides)

    def architecture(self) -> dict[str, Any]:
        """The settings that fix the shape of the weights."""
        return {name: getattr(self, name) for name in ARCHITECTURE}

    def with_architecture_of(self, source: TrainConfig, given: set[str]) -> TrainConfig:
        """This config with `source`'s architecture; a conflicting setting in `given` fails.

        Args:
            source: the configuration of the run `--init` names.
            given: the options set explicitly (flags or `--config`), which may not disagree.
        """
        conflicts = [
            f"--{name.replace('_', '-')} {getattr(self, name)} (the run has {value})"
            for name, value in source.architecture().items()
            if name in given and getattr(self, name) != value
        ]
        if conflicts:
            raise ValueError(
                f"--init {self.init}: the architecture comes from that run; drop or change "
                + ", ".join(conflicts)
            )
        return dataclasses.replace(self, **source.architecture())


FIELDS = {field.name: field for field in dataclasses.fields(TrainConfig)}
ARCHITECTURE = tuple(name for name, field in FIELDS.items() if field.metadata["architecture"])


def _flag_type(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args and typing.get_origin(annotation) is not tuple else annotation


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
        description=(
            "Train UniSRec: pre-train, fine-tune (inductive/transductive) or SASRec. With no "
            "--data (and no --config), the main job: MovieLens-100K end to end."
        ),
    )
    parser.add_argument("--config", help="YAML file of options; flags override it")
    parser.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="continue from the run folder's last checkpoint if it has one",
    )
    hints = typing.get_type_hints(TrainConfig)
    for name, field in FIELDS.items():
        kind = _flag_type(hints[name])
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "dest": name}
        if kind is bool:
            kwargs.update(type=_parse_bool, metavar="BOOL")
        elif typing.get_origin(kind) is tuple:
            kwargs.update(type=int, nargs="+")
        else:
            kwargs["type"] = kind
        if field.metadata["choices"]:
            kwargs["choices"] = field.metadata["choices"]
        default = field.default
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
        help_text = field.metadata["help"]
        if default is not None:
            help_text += f" (default: {shown})"
        parser.add_argument("--" + name.replace("_", "-"), help=help_text, **kwargs)
    return parser


def parse_flags(argv: list[str] | None = None) -> tuple[dict[str, Any], argparse.Namespace]:
    """The options set on the command line or in `--config FILE`, flags winning.

    Returns:
        (options given explicitly, the parsed namespace for `--resume` and `--config`).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    given = {name: getattr(args, name) for name in FIELDS if hasattr(args, name)}
    if args.config:
        try:
            with open(args.config, encoding="utf-8") as f:
                text = f.read()
        except OSError as error:
            parser.error(f"--config {args.config}: {error.strerror}")
        try:
            from_file = TrainConfig.from_yaml(text, args.config).to_dict()
            data = yaml.safe_load(text) or {}
        except ValueError as error:
            parser.error(str(error))
        given = {**{k: from_file[k] for k in data}, **given}
    return given, args


def parse_args(
    argv: list[str] | None = None, defaults: dict[str, Any] | None = None
) -> tuple[TrainConfig, set[str], argparse.Namespace]:
    """A `TrainConfig` from flags over `--config FILE` over `defaults` over the official ones.

    Returns:
        (config, the names of the options set explicitly, the parsed namespace).
    """
    given, args = parse_flags(argv)
    try:
        config = TrainConfig.from_dict({**(defaults or {}), **given})
    except (TypeError, ValueError) as error:
        build_parser().error(str(error))
    return config, set(given), args
