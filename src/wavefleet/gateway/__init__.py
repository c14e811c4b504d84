"""The OpenAI-compatible gateway: API, backends, live state, routing, metrics."""
