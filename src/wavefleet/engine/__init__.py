"""Engines Wavefleet starts itself: the embedded llama.cpp engine behind `wave up`."""
