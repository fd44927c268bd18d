"""The one exception bad input raises."""

from __future__ import annotations

import os


class DataError(Exception):
    """Bad input data: the message names the file, the line (when there is one) and the problem."""

    def __init__(
        self, problem: str, path: str | os.PathLike | None = None, line: int | None = None
    ):
        self.problem = problem
        self.path = None if path is None else os.fspath(path)
        self.line = line
        where = ""
        if self.path is not None:
            where = self.path if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {problem}" if where else problem)
