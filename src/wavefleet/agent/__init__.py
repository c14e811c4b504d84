"""The fleet agent (`wave agent`): on each host, one engine process per loaded model, started when a
request names it, kept within each device's memory, unloaded when idle, restarted when it crashes.

    config       agent.yaml (a leaf: `wave render` imports it without the server parts)
    units        durations ("5m", -1) and sizes ("4GiB")
    devices      what each device has: NVML, /proc/meminfo, cgroup limits
    memory       the sizing engine's estimate per engine, and the buffers llama-server logs
    launch       each model's command line, from the engines table
    process      one engine process: output kept, stopped by process group
    host         the Agent: states, on-demand starts, eviction, idle timers, restarts
    backend      the engines as gateway backends (the on-demand layer), and their monitor
    control      the control API (/agent/v1/...), behind the shared secret
    status       its records, shared with the client
    client       AgentClient: gateways and `wave agent status`
    metrics      Prometheus metrics
    server       the HTTP server: the gateway's OpenAI app over the engines, plus the control API

Import the module you need: nothing is re-exported here, so the config loads without aiohttp.
"""
