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


class InvalidRequest(GenmemError):
    """A request to the replay service is malformed (which field, and how, is in the message)."""


class TooManySamples(GenmemError):
    """A request asks for more images than the replay service allows at once."""


class NotAuthorized(GenmemError):
    """The replay service needs a bearer token that the request did not bring, or brought wrong."""


class ServiceUnavailable(GenmemError):
    """The replay service cannot answer: it has no version loaded yet, or it cannot be reached."""


class ServerBusy(ServiceUnavailable):
    """The replay service has as much work in flight as it allows; the request may be sent again shortly."""

    retry_after = 1  # seconds, sent as the Retry-After header
