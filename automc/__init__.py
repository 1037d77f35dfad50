"""automc: AutoML model-compression search.

The core package holds configuration, the experiment loop, data, models, the evaluator and
the plugin registry. Agents, search spaces and device profiles live in their own top-level
packages and are found only through entry points (see :mod:`automc.registry`).
"""

from __future__ import annotations

__version__ = "0.1.0"

from automc.errors import UserError

__all__ = ["UserError", "__version__"]
