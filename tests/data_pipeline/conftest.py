"""Fixtures for data_pipeline tests: a small synthetic log."""

import pathlib


def write_log(folder: pathlib.Path, users: int = 12, items: int = 9) -> pathlib.Path:
    """A small log domain: every user sees 5-8 items, one timestamp tie per user."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["user_id,item_id,timestamp"]
    for u in range(users):
        for k in range(5 + u % 4):
            item = (u + 2 * k) % items
            lines.append(f"u{u},i{item},{1000 + 10 * k - (k == 3) * 10}")
    (folder / "log.csv").write_text("\n".join(lines) + "\n")
    rows = ["item_id\ttext"] + [
        f"i{i}\titem number {i}" if i != 4 else "i4\t" for i in range(items)
    ]
    (folder / "items.tsv").write_text("\n".join(rows) + "\n")
    return folder
