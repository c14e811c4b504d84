"""Rendering the plan into deployable, validated artifacts per host."""
