"""The README's result tables are the ones their commands print from the committed results.

`bench_scientific.py --report` and `bench_ablations.py --variants unisrec` tabulate the results
files without training; a results file committed without its README table (or the other way
round) fails here.
"""

import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_ablations  # noqa: E402
import bench_scientific  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def readme_table(header: str) -> str:
    """The Markdown table in the README whose first line starts with `header`."""
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(header)]
    assert len(starts) == 1, f"expected one README table starting {header!r}, found {len(starts)}"
    table = []
    for line in lines[starts[0] :]:
        if not line.startswith("|"):
            break
        table.append(line)
    return "\n".join(table)


@pytest.mark.parametrize(
    "header, table",
    [
        pytest.param(
            "| model | Recall@10 |",
            lambda: bench_scientific.markdown_table(
                bench_scientific.read_results(RESULTS / "scientific.json")["runs"]
            ),
            id="scientific",
        ),
        pytest.param(
            "| variant (transductive) |",
            lambda: bench_ablations.markdown_table(
                bench_scientific.read_results(RESULTS / "ablations.json")
            ),
            id="ablations",
        ),
    ],
)
def test_readme_table_is_the_commands_table(header, table):
    assert readme_table(header) == table()


def test_a_stale_readme_table_is_caught():
    results = bench_scientific.read_results(RESULTS / "ablations.json")
    name = next(iter(results["results"]))
    results["results"][name]["mean"]["ndcg@10"] += 0.0001
    assert readme_table("| variant (transductive) |") != bench_ablations.markdown_table(results)
