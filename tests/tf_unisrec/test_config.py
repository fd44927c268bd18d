"""TrainConfig: the stage table, flags, YAML files and what --init takes from its source run."""

import pytest

from tf_unisrec.config import ARCHITECTURE, FIELDS, STAGES, TrainConfig, build_parser, parse_args


def test_official_defaults():
    config = TrainConfig()
    assert (config.hidden_dim, config.num_layers, config.num_heads, config.intermediate_dim) == (
        300, 2, 2, 256,
    )  # fmt: skip
    assert (config.temperature, config.seq_seq_weight, config.num_experts) == (0.07, 1e-3, 8)
    assert config.batch_size == 2048 and TrainConfig(stage="pretrain").batch_size == 8192


def test_stage_table():
    assert {s.item_mode for s in STAGES.values()} == {"text", "text+id", "id"}
    assert not STAGES["pretrain"].validates and STAGES["transductive"].validates
    assert TrainConfig(stage="pretrain").uses_seq_seq_view
    assert not TrainConfig(stage="pretrain", seq_seq_weight=0).uses_seq_seq_view
    assert not TrainConfig(stage="inductive").uses_seq_seq_view
    with pytest.raises(ValueError, match="takes no --init"):
        TrainConfig(stage="sasrec", init="runs/pretrain")


def test_every_flag_has_help_beyond_its_default():
    helps = {a.dest: a.help for a in build_parser()._actions if a.dest in FIELDS}
    assert set(helps) == set(FIELDS)
    for name, text in helps.items():
        assert text and not text.startswith("(default:"), name


def test_flags_override_yaml_and_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(TrainConfig(stage="inductive", learning_rate=0.01, ks=(5, 20)).to_yaml())
    config, given, _ = parse_args(
        ["--config", str(path), "--learning-rate", "0.5", "--gating", "false"]
    )
    assert config.stage == "inductive" and config.ks == (5, 20)
    assert config.learning_rate == 0.5 and config.gating is False
    assert {"learning_rate", "gating", "stage", "ks"} <= given
    assert TrainConfig.from_yaml(config.to_yaml()) == config


def test_bad_values_are_clear_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--stage", "finetune"])
    assert "--stage" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("hidden_size: 64\n")
    with pytest.raises(SystemExit):
        parse_args(["--config", str(bad)])
    assert "unknown options ['hidden_size']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--config", str(tmp_path / "missing.yaml")])
    assert "missing.yaml" in capsys.readouterr().err


def test_init_takes_the_source_architecture_and_refuses_conflicts():
    source = TrainConfig(stage="pretrain", hidden_dim=64, num_experts=4, whitening=False)
    config, given, _ = parse_args(["--stage", "inductive", "--init", "run", "--dropout", "0.1"])
    inherited = config.with_architecture_of(source, given)
    assert inherited.architecture() == source.architecture()
    assert inherited.dropout == 0.1 and inherited.stage == "inductive"
    assert set(ARCHITECTURE) >= {"hidden_dim", "num_experts", "whitening", "max_length"}

    config, given, _ = parse_args(["--init", "run", "--hidden-dim", "300", "--num-experts", "4"])
    with pytest.raises(ValueError, match="--hidden-dim 300 \\(the run has 64\\)"):
        config.with_architecture_of(source, given)
