"""The Scientific and ablation benchmarks keep every finished run in their results files.

A run recorded there is not trained again even when its run folder is gone, and rows that a
command does not compute are kept. Training is replaced by a stand-in that writes a finished
run folder, so these tests check the bookkeeping, not the models.
"""

import fcntl
import json
import pathlib
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import bench_ablations  # noqa: E402
import bench_scientific  # noqa: E402

from tf_unisrec.run_dir import RunDir  # noqa: E402


def finished_run(path: pathlib.Path, seed: int, *flags: str) -> dict:
    """Writes a finished run folder whose test NDCG@10 encodes the seed and the flags."""
    run = RunDir(path)
    run.path.mkdir(parents=True)
    offset = 0.001 * (seed - 2020) + 0.0001 * len(flags)
    test = {
        "recall@10": 0.12 + offset,
        "ndcg@10": 0.06 + offset,
        "recall@50": 0.24,
        "ndcg@50": 0.09,
    }
    run.write_history([{"epoch": e, "loss": 1.0, "valid_ndcg@10": 0.05 + e / 100} for e in (1, 2)])
    metrics = {
        "stage": "transductive",
        "best_epoch": 2,
        "epochs_run": 2,
        "train_examples_per_second": 100.0,
        "seconds_per_epoch": 10.0,
        "eval_seconds": 1.0,
        "valid": test,
        "test": test,
    }
    run.write_metrics(metrics)
    return metrics


@pytest.fixture
def stand_in(monkeypatch, tmp_path):
    """Replaces data builds, pre-training and training; returns the runs trained, in order."""
    trained: list[str] = []
    pretrained: list[str] = []

    def train(run_dir, *flags):
        trained.append(pathlib.Path(run_dir).name)
        seed = int(flags[flags.index("--seed") + 1])
        return finished_run(run_dir, seed, *flags)

    def pretrain(work, pooling, epochs, batch_size, name="pretrain", flags=()):
        pretrained.append(name)
        run = RunDir(work / "runs" / f"{name}-b{batch_size}")
        if not run.has_metrics():
            run.path.mkdir(parents=True)
            run.write_metrics({"epochs_run": epochs, "seconds_per_epoch": 5.0})
        return run.path

    for module in (bench_scientific, bench_ablations):
        monkeypatch.setattr(module, "dataset", lambda work, name, *_: str(work / "data" / name))
        monkeypatch.setattr(module, "pretrain", pretrain)
        monkeypatch.setattr(module, "train", train)
    monkeypatch.setattr(
        bench_scientific,
        "pretrain_record",
        lambda run: {"batch_size": 2048, "seconds_per_epoch": 7.0},
    )
    monkeypatch.setattr(bench_ablations, "pretrain_record", lambda run: {"seconds_per_epoch": 5.0})
    return trained, pretrained


def run_main(module, monkeypatch, *argv: str) -> None:
    monkeypatch.setattr(sys, "argv", [module.__file__, *argv])
    module.main()


def test_scientific_records_runs_and_keeps_earlier_rows(stand_in, monkeypatch, tmp_path):
    trained, _ = stand_in
    output = tmp_path / "results" / "scientific.json"
    output.parent.mkdir()
    # A row written before per-seed records: only its means, over three seeds.
    legacy = {"seeds": [2020, 2021, 2022], "mean": {"recall@10": 0.1, "ndcg@10": 0.05,
              "recall@50": 0.2, "ndcg@50": 0.07}}  # fmt: skip
    legacy["std"] = dict.fromkeys(legacy["mean"], 0.0)
    output.write_text(json.dumps({"pooling": "mean", "runs": {"sasrec": legacy}}))
    work = tmp_path / "work"
    args = ["--work", str(work), "--output", str(output), "--seeds", "2020", "2021"]

    run_main(bench_scientific, monkeypatch, *args, "--runs", "transductive-pt", "sasrec",
             "--pretrain-epochs", "7", "--from-epochs", "7")  # fmt: skip
    assert trained == ["transductive-pt7-s2020", "sasrec-s2020", "transductive-pt7-s2021",
                       "sasrec-s2021"]  # fmt: skip
    results = json.loads(output.read_text())
    assert list(results["runs"]) == ["sasrec", "transductive-pt7"]
    assert results["runs"]["sasrec"] == legacy  # two new seeds do not replace three old ones
    row = results["runs"]["transductive-pt7"]
    assert row["seeds"] == [2020, 2021]
    assert row["per_seed"]["2021"]["valid_ndcg@10"] == pytest.approx([0.06, 0.07])
    tests = [row["per_seed"][seed]["test"]["ndcg@10"] for seed in ("2020", "2021")]
    assert tests[1] - tests[0] == pytest.approx(0.001)
    assert row["mean"]["ndcg@10"] == pytest.approx(sum(tests) / 2, abs=1e-4)
    assert results["pretrain"] == {"batch_size": 2048, "seconds_per_epoch": 7.0}
    assert (tmp_path / "results" / "scientific_valid_ndcg.png").is_file()

    # The run folders are lost: the recorded runs count as finished; only the new seed trains.
    for run in (work / "runs").glob("*-s20*"):
        for file in run.iterdir():
            file.unlink()
        run.rmdir()
    trained.clear()
    run_main(bench_scientific, monkeypatch, *args, "2022", "--runs", "transductive-pt",
             "--pretrain-epochs", "7", "--from-epochs", "7")  # fmt: skip
    assert trained == ["transductive-pt7-s2022"]
    rows = json.loads(output.read_text())["runs"]
    assert rows["transductive-pt7"]["seeds"] == [2020, 2021, 2022]
    assert rows["transductive-pt7"]["per_seed"]["2020"] == row["per_seed"]["2020"]
    assert rows["sasrec"] == legacy


def test_bert_init_runs_tune_from_their_own_pretraining(stand_in, monkeypatch, tmp_path):
    trained, pretrained = stand_in
    inits = []
    stand_in_train = bench_scientific.train

    def train(run_dir, *flags):
        inits.append(pathlib.Path(flags[flags.index("--init") + 1]).relative_to(work / "runs"))
        return stand_in_train(run_dir, *flags)

    monkeypatch.setattr(bench_scientific, "train", train)
    work = tmp_path / "work"
    output = tmp_path / "scientific.json"
    run_main(bench_scientific, monkeypatch, "--work", str(work), "--output", str(output),
             "--seeds", "2020", "--runs", "inductive-pt", "inductive-bert-init-pt",
             "--pretrain-epochs", "7", "--from-epochs", "7")  # fmt: skip
    assert pretrained == ["pretrain", "pretrain-bert-whitening-init"]
    assert trained == ["inductive-pt7-s2020", "inductive-bert-init-pt7-s2020"]
    assert inits == [
        pathlib.Path("pretrain-b2048/best/ckpt-7"),
        pathlib.Path("pretrain-bert-whitening-init-b2048/best/ckpt-7"),
    ]
    results = json.loads(output.read_text())
    assert list(results["runs"]) == ["inductive-pt7", "inductive-bert-init-pt7"]
    assert results["runs"]["inductive-bert-init-pt7"]["official"] is None
    assert {"pretrain", "pretrain-bert-whitening-init"} <= set(results)
    table = bench_scientific.markdown_table(results["runs"])
    assert "ours: UniSRec inductive (text only), BERT-whitening init (ours), pre-trained 7" in table
    assert bench_scientific.stage_of("transductive-bert-init-pt7") == "transductive"
    # The ablation's "BERT-whitening init" row reads this pre-training at its epoch 2.
    name, flags, _ = bench_scientific.PRETRAININGS["-bert-init"]
    assert flags == ("--whitening-init", "bert")
    assert bench_ablations.VARIANTS["BERT-whitening init"] == flags
    assert name == "pretrain-" + bench_ablations.slug("BERT-whitening init")


def test_second_pretraining_runs_tune_from_a_pretraining_with_another_seed(
    stand_in, monkeypatch, tmp_path
):
    trained, pretrained = stand_in
    pretrain_flags, inits = [], []
    stand_in_pretrain, stand_in_train = bench_scientific.pretrain, bench_scientific.train

    def pretrain(work, pooling, epochs, batch_size, name="pretrain", flags=()):
        pretrain_flags.append(flags)
        return stand_in_pretrain(work, pooling, epochs, batch_size, name, flags)

    def train(run_dir, *flags):
        inits.append(pathlib.Path(flags[flags.index("--init") + 1]).relative_to(work / "runs"))
        return stand_in_train(run_dir, *flags)

    monkeypatch.setattr(bench_scientific, "pretrain", pretrain)
    monkeypatch.setattr(bench_scientific, "train", train)
    work = tmp_path / "work"
    output = tmp_path / "scientific.json"
    run_main(bench_scientific, monkeypatch, "--work", str(work), "--output", str(output),
             "--seeds", "2020", "--runs", "transductive-pretrain-seed2021-pt",
             "--pretrain-epochs", "7", "--from-epochs", "7")  # fmt: skip
    assert pretrained == ["pretrain-seed2021"]
    assert pretrain_flags == [("--seed", "2021")]
    assert trained == ["transductive-pretrain-seed2021-pt7-s2020"]
    assert inits == [pathlib.Path("pretrain-seed2021-b2048/best/ckpt-7")]
    results = json.loads(output.read_text())
    assert list(results["runs"]) == ["transductive-pretrain-seed2021-pt7"]
    assert results["runs"]["transductive-pretrain-seed2021-pt7"]["official"] is None
    assert "pretrain-seed2021" in results and "pretrain" not in results
    table = bench_scientific.markdown_table(results["runs"])
    assert (
        "ours: UniSRec transductive (text + ID), pre-training seed 2021, pre-trained 7 epochs"
        in table
    )
    assert bench_scientific.stage_of("inductive-pretrain-seed2021-pt2") == "inductive"


def test_each_stage_is_one_block_of_the_table_so_the_papers_row_closes_it(tmp_path):
    def blocks(names):
        stages = [bench_scientific.stage_of(name) for name in names]
        return [stage for i, stage in enumerate(stages) if i == 0 or stages[i - 1] != stage]

    assert len(blocks(bench_scientific.RUNS)) == len(set(blocks(bench_scientific.RUNS)))
    record = {
        "test": dict.fromkeys(bench_scientific.METRICS, 0.1),
        **dict.fromkeys(bench_scientific.RUN_FIELDS),
    }
    runs = ("inductive-pretrain-seed2021-pt7", "transductive-pt7", "inductive-pt7")
    pretrained = bench_scientific.pretraining_paths(tmp_path, 2048)
    summary = bench_scientific.summarize(
        {(run, 2020): record for run in runs}, {}, pretrained, "mean"
    )
    rows = bench_scientific.markdown_table(summary["runs"]).splitlines()
    labels = [row.split(" | ")[0] for row in rows[2:]]
    assert labels == [
        "| ours: UniSRec inductive (text only), pre-trained 7 epochs",
        "| official code: UniSRec inductive, pre-trained 7 epochs",
        "| ours: UniSRec inductive (text only), pre-training seed 2021, pre-trained 7 epochs",
        "| paper: UniSRec inductive",
        "| ours: UniSRec transductive (text + ID), pre-trained 7 epochs",
        "| official code: UniSRec transductive, pre-trained 7 epochs",
        "| paper: UniSRec transductive",
    ]


def test_scientific_report_tabulates_recorded_runs_without_training(
    stand_in, monkeypatch, tmp_path
):
    trained, _ = stand_in
    output = tmp_path / "scientific.json"
    args = ["--work", str(tmp_path / "work"), "--output", str(output), "--seeds", "2020"]
    run_main(bench_scientific, monkeypatch, *args, "--runs", "inductive")
    written = json.loads(output.read_text())
    trained.clear()
    run_main(bench_scientific, monkeypatch, *args, "--runs", "inductive", "transductive",
             "--report")  # fmt: skip
    assert trained == []
    assert json.loads(output.read_text())["runs"] == written["runs"]


def test_side_by_side_scientific_commands_keep_each_others_runs(stand_in, monkeypatch, tmp_path):
    trained, _ = stand_in
    output = tmp_path / "scientific.json"
    work = tmp_path / "work"
    args = ["--work", str(work), "--output", str(output), "--seeds", "2020", "2021"]
    other_run = work / "runs" / "inductive-s2020"
    stand_in_train = bench_scientific.train

    def train_beside_another_command(run_dir, *flags):
        # While this command trains its first run, another one records `inductive-s2020`.
        if not other_run.exists():
            finished_run(other_run, 2020)
            record = {("inductive", 2020): bench_scientific.seed_record(RunDir(other_run))}
            pretrained = bench_scientific.pretraining_paths(work, 2048)
            bench_scientific.record(output, record, pretrained, "mean")
        return stand_in_train(run_dir, *flags)

    monkeypatch.setattr(bench_scientific, "train", train_beside_another_command)
    run_main(bench_scientific, monkeypatch, *args, "--runs", "sasrec")
    assert trained == ["sasrec-s2020", "sasrec-s2021"]
    rows = json.loads(output.read_text())["runs"]
    assert rows["inductive"]["seeds"] == [2020]
    assert rows["sasrec"]["seeds"] == [2020, 2021]


def test_the_results_lock_is_held_while_recording(tmp_path):
    output = tmp_path / "scientific.json"
    lock = tmp_path / ".scientific.json.lock"
    with (
        bench_scientific.results_lock(output),
        open(lock) as other,
        pytest.raises(BlockingIOError),
    ):
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(lock) as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released on leaving


def test_ablations_reuse_recorded_variants_and_scientific_runs(stand_in, monkeypatch, tmp_path):
    trained, pretrained = stand_in
    work = tmp_path / "work"
    scientific = tmp_path / "scientific.json"
    output = tmp_path / "ablations.json"
    # bench_scientific recorded the full model's fine-tunes from epoch 2.
    run_main(bench_scientific, monkeypatch, "--work", str(work), "--output", str(scientific),
             "--seeds", "2020", "--runs", "transductive-pt", "--from-epochs", "2",
             "--pretrain-epochs", "2")  # fmt: skip
    trained.clear()
    pretrained.clear()
    args = ["--work", str(work), "--output", str(output), "--scientific", str(scientific),
            "--seeds", "2020"]  # fmt: skip

    run_main(bench_ablations, monkeypatch, *args, "--variants", "unisrec", "no-moe")
    assert pretrained == ["pretrain-no-moe"]
    assert trained == ["ablation-no-moe-transductive-pt2-s2020"]
    run_main(bench_ablations, monkeypatch, *args, "--variants", "no-lss")
    results = json.loads(output.read_text())
    assert list(results["results"]) == ["UniSRec", "w/o MoE", "w/o L_SS"]
    assert results["results"]["UniSRec"]["seeds"] == [2020]
    assert set(results["pretraining"]) == {"UniSRec", "w/o MoE", "w/o L_SS"}

    trained.clear()
    pretrained.clear()
    run_main(bench_ablations, monkeypatch, *args, "--variants", "unisrec", "no-moe", "no-lss")
    assert trained == [] and pretrained == []  # every seed recorded: nothing pre-trains
    run_main(bench_ablations, monkeypatch, *args[:-1], "2021", "--variants", "no-moe")
    assert pretrained == ["pretrain-no-moe"]
    assert trained == ["ablation-no-moe-transductive-pt2-s2021"]
    assert json.loads(output.read_text())["results"]["w/o MoE"]["seeds"] == [2020, 2021]


def test_ablations_refuse_a_results_file_of_another_setting(stand_in, monkeypatch, tmp_path):
    output = tmp_path / "ablations.json"
    output.write_text(json.dumps({"stage": "inductive", "pretrain_epochs": 2, "results": {}}))
    with pytest.raises(SystemExit):
        run_main(bench_ablations, monkeypatch, "--work", str(tmp_path), "--output", str(output),
                 "--scientific", str(tmp_path / "none.json"))  # fmt: skip


def test_an_unreadable_results_file_stops_with_one_line_and_is_kept(
    stand_in, monkeypatch, tmp_path
):
    trained, _ = stand_in
    output = tmp_path / "scientific.json"
    output.write_text('{"runs": {"sasrec": ')  # cut short
    with pytest.raises(SystemExit, match=r"error: .*scientific.json is unreadable"):
        run_main(bench_scientific, monkeypatch, "--work", str(tmp_path / "work"), "--output",
                 str(output), "--seeds", "2020", "--runs", "sasrec")  # fmt: skip
    assert trained == []
    assert output.read_text() == '{"runs": {"sasrec": '
