"""popvault: make a mailbox impossible to lose.

The library API lives here; the CLI (:mod:`popvault.cli`) is a thin layer on top.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
