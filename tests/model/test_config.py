import pytest

from tf_unisrec.config import TrainConfig, parse_args


def test_official_defaults():
    config = TrainConfig()
    assert (config.hidden_dim, config.num_layers, config.num_heads, config.intermediate_dim) == (
        300, 2, 2, 256,
    )  # fmt: skip
    assert (config.temperature, config.seq_seq_weight, config.num_experts) == (0.07, 1e-3, 8)
    assert config.batch_size == 2048 and TrainConfig(stage="pretrain").batch_size == 8192


def test_flags_override_yaml_and_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    TrainConfig(stage="inductive", learning_rate=0.01, ks=(5, 20)).save(path)
    config, _ = parse_args(["--config", str(path), "--learning-rate", "0.5", "--gating", "false"])
    assert config.stage == "inductive" and config.ks == (5, 20)
    assert config.learning_rate == 0.5 and config.gating is False
    config.save(tmp_path / "d.yaml")
    assert TrainConfig.load(tmp_path / "d.yaml") == config


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
