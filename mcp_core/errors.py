"""Exception types of MultiCellPose.

Every error a user can cause is one of these, with a sentence that names the file
(or parameter) and the problem, so the GUI can show it as-is.
"""

from __future__ import annotations


class MCPError(Exception):
    """Base class of every MultiCellPose error."""


class ImageReadError(MCPError):
    """An image file cannot be opened or read (missing, unknown format, truncated...)."""


class LabelFileError(MCPError):
    """A label file cannot be read or written, or its contents are inconsistent."""


class ParameterError(MCPError, ValueError):
    """A parameter is out of range or inconsistent with the data."""


class ModelError(MCPError):
    """A model cannot be built, loaded or saved (missing weights, wrong architecture...)."""


class JobError(MCPError):
    """A job cannot be submitted or controlled."""
