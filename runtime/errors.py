"""Error family of headpose-edge.

Every error a user can cause derives from :class:`HeadposeError`. Messages say what was
expected, what was found and how to fix it; the CLI prints the message on one line and exits 2.
"""

from __future__ import annotations


class HeadposeError(Exception):
    """Base class of every error headpose-edge raises for bad input or bad state."""


class UnknownModelError(HeadposeError, KeyError):
    """A model id that the registry does not know."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(HeadposeError):
    """A checkpoint that is missing, corrupt or of another architecture."""


class ManifestError(HeadposeError):
    """A manifest that is missing, malformed or describes another kind of artifact."""


class ConversionError(HeadposeError):
    """A conversion step that failed or a parity gate that was not met."""


class InputError(HeadposeError, ValueError):
    """Frames, sources or options of the wrong kind."""
