"""Engines the fleet runtime starts as processes, one module per engine."""
