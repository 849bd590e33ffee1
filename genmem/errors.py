"""Errors a user can act on. Each message says what was wrong and what to do; the CLI prints it as one line."""


class GenmemError(Exception):
    """Base class: anything genmem reports to the user instead of a traceback."""


class InvalidSetting(GenmemError, ValueError):
    """A setting (architecture, hyperparameter, device) has a value genmem cannot use."""


class DataError(GenmemError):
    """A data source is missing, malformed or does not fit the memory."""


class MemoryNotFound(GenmemError):
    """The path is not a memory, or the version asked for does not exist."""


class CorruptMemory(GenmemError):
    """A file of a version fails its checksum or cannot be decoded."""


class MemoryBusy(GenmemError):
    """Another process is writing a new version of the same memory."""


class UnknownClass(GenmemError):
    """A class asked for is not in the memory."""
