"""The package structure: imports point one way, and every on-disk format has one owner.

data_pipeline  (data_pipeline.text, data_pipeline.fileio: leaves)
      ^
  tf_unisrec    (tf_unisrec.main_job alone may also use export)
      ^
    export
"""

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("data_pipeline", "tf_unisrec", "export")
# Each package may import these project packages (itself included).
ALLOWED = {
    "data_pipeline": {"data_pipeline"},
    "tf_unisrec": {"data_pipeline", "tf_unisrec"},
    "export": {"data_pipeline", "tf_unisrec", "export"},
}
MAIN_JOB = "tf_unisrec/main_job.py"
# File names of the on-disk formats, and the one module that may spell each.
OWNERS = {
    "manifest.json": "data_pipeline/dataset.py",
    "items.tsv": "data_pipeline/dataset.py",
    "text_features.npy": "data_pipeline/dataset.py",
    "config.yaml": "tf_unisrec/run_dir.py",
    "metrics.json": "tf_unisrec/run_dir.py",
    "history.json": "tf_unisrec/run_dir.py",
}


def source_files(*folders: str) -> list[pathlib.Path]:
    return sorted(p for folder in folders for p in (REPO / folder).rglob("*.py"))


def project_imports(path: pathlib.Path) -> set[str]:
    """Dotted names of project modules that `path` imports, wherever the import statement is."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {n for n in names if n.split(".")[0] in PACKAGES}


def test_imports_point_one_way():
    wrong = []
    for path in source_files(*PACKAGES):
        relative = path.relative_to(REPO).as_posix()
        package = relative.split("/")[0]
        allowed = ALLOWED[package] | ({"export"} if relative == MAIN_JOB else set())
        wrong += [f"{relative} imports {m}" for m in project_imports(path)
                  if m.split(".")[0] not in allowed]  # fmt: skip
    assert not wrong, "\n".join(wrong)


def test_text_encoder_and_fileio_are_leaves():
    for path in source_files("data_pipeline/text"):
        imports = project_imports(path)
        assert imports <= {"data_pipeline.fileio", "data_pipeline.text.bert_folder",
                           "data_pipeline.text.tokenizer"}, path  # fmt: skip
    assert not project_imports(REPO / "data_pipeline" / "fileio.py")


@pytest.mark.parametrize("name", sorted(OWNERS))
def test_each_file_name_is_spelled_by_its_owner_only(name):
    """A file name as a string of its own (a path part, not prose) appears in one module."""
    spelled = set()
    for path in source_files(*PACKAGES, "benchmarks", "scripts"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in (name, "/" + name):
                spelled.add(path.relative_to(REPO).as_posix())
    assert spelled <= {OWNERS[name]}, spelled
