"""Simulated engines: OpenAI API, engine metrics dialects, a latency model, fault injection."""
