"""Device telemetry: collectors for NVIDIA GPUs (NVML), CPUs (RAPL, or a TDP estimate) and Jetson
boards (tegrastats), a Prometheus exporter for them, and energy and cost per request."""
