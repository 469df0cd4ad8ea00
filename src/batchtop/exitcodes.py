"""Exit statuses, as fixed by the command-line contract."""

from enum import IntEnum


class Exit(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    ALERT = 3
