"""Errors with one-line messages meant for users; the CLI prints them without a traceback."""

from __future__ import annotations


class PapersysError(Exception):
    """Base class: the message names the input and what to do about it."""

    exit_code = 1


class ConfigError(PapersysError):
    """Invalid or unreadable configuration (a usage error)."""

    exit_code = 2


class UsageError(PapersysError):
    """Invalid command-line input."""

    exit_code = 2


class LakeError(PapersysError):
    """The lake cannot be opened, migrated or written."""
