"""Load generation and the field's standard metrics (vLLM `bench serve` definitions)."""
