"""MultiCellPose core library: image IO, labels, model, training, inference, measurement.

Importing ``mcp_core`` imports neither a UI toolkit nor a network stack nor torch; the
heavy modules (``mcp_core.model``, ``mcp_core.train``, ``mcp_core.segment``) load torch
when imported themselves.
"""

from .errors import ImageReadError, LabelFileError, MCPError, ModelError, ParameterError

__version__ = "0.1.0"
__all__ = ["ImageReadError", "LabelFileError", "MCPError", "ModelError", "ParameterError", "__version__"]
