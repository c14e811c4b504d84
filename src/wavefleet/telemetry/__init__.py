"""Device telemetry: collectors for NVIDIA GPUs (NVML), CPUs (RAPL, or a TDP estimate) and Jetson
boards (tegrastats), a Prometheus exporter for them, and energy and cost per request.

    names        every metric name (the ecosystem's where one exists, else wave_)
    nvml         NVIDIA GPUs; fake_nvml and nvml_recording replay recorded GPUs
    cpu          RAPL, and the TDP estimate where RAPL is missing
    jetson       tegrastats
    exporter     a host's collectors read together, served to Prometheus
    discovery    which collectors apply on this host, and why the others do not
    attribution  a device's energy split among the requests that ran on it
    replay       a recorded run (scripts/gpu/attribution_check.py) evaluated under each scheme
    gpu_model    a synthetic GPU's power, counter and engine timings, for testing attribution
    energy_log   devices' readings kept over time, for attribution
    cost         energy and device time at the inventory's tariff

Import the module you need: nothing is re-exported here, so `attribution`, `counter`, `energy_log`, `replay` and
`gpu_model` load with the standard library alone (the GPU check runs them where the package's dependencies are not
installed).
"""
