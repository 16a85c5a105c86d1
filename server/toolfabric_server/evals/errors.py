"""Errors of `toolfabric eval`.

    EvalError
    ├── DatasetError     a dataset line or row is malformed (names the file, line and field)
    ├── JudgeError       the judge could not be asked (unreachable, HTTP error)
    │   └── JudgeCacheMiss   replay mode and the judge call is not in the cache
    └── RunError         a results directory that cannot be resumed or compared
"""

from __future__ import annotations


class EvalError(Exception):
    pass


class DatasetError(EvalError, ValueError):
    pass


class JudgeError(EvalError):
    pass


class JudgeCacheMiss(JudgeError):
    pass


class RunError(EvalError):
    pass
