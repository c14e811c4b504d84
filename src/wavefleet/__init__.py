"""Wavefleet: plan, render, serve and measure your own AI platform across a few machines."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
