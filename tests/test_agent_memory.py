"""What the agent knows of memory: each device's total and free (/proc/meminfo and cgroups, NVML),
the sizing engine's estimate per engine, and the buffers llama-server logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from wavefleet.agent.devices import GpuMemory, HostMemory
from wavefleet.agent.memory import CPU_RUNTIME_BYTES, EngineBuffers, estimate_llama_server
from wavefleet.models.bundled import bundled_model_path
from wavefleet.plan.gguf_file import read_gguf
from wavefleet.plan.sizing import GIB
from wavefleet.telemetry.fake_nvml import RECORDINGS, FakeNvml

MIB = 2**20
KIB = 1024

# llama-server -lv 4 loading the bundled model with 2 slots of 512 tokens on a CPU
CPU_LOG = """\
0.00.159.995 I load_tensors:   CPU_Mapped model buffer size =    92.10 MiB
0.00.161.850 I llama_context:        CPU  output buffer size =     0.38 MiB
0.00.161.975 I llama_kv_cache:        CPU KV buffer size =    22.50 MiB
0.00.177.932 I llama_kv_cache: size =   22.50 MiB (   512 cells,  30 layers,  2/2 seqs), K (f16):   11.25 MiB, V (f16):   11.25 MiB
0.00.186.560 I sched_reserve:        CPU compute buffer size =    14.01 MiB
"""
# the shape of a CUDA build's lines with every layer offloaded (Llama-3.1-8B Q4_K_M, 4 x 8192)
CUDA_LOG = """\
load_tensors:        CUDA0 model buffer size =  4403.50 MiB
load_tensors:   CPU_Mapped model buffer size =   281.81 MiB
llama_context:  CUDA_Host  output buffer size =     1.96 MiB
llama_kv_cache:      CUDA0 KV buffer size =  4096.00 MiB
sched_reserve:      CUDA0 compute buffer size =   258.50 MiB
sched_reserve:  CUDA_Host compute buffer size =    72.01 MiB
"""


def test_logged_buffers_add_up_by_device() -> None:
    cpu = EngineBuffers()
    for line in CPU_LOG.splitlines():
        cpu.feed(line)
    assert cpu.device_bytes() == 0
    assert cpu.host_bytes() == pytest.approx((92.10 + 0.38 + 22.50 + 14.01) * MIB, abs=4)
    assert cpu.by_kind()["KV"] == 22.5 * MIB  # the summary line after it is not a buffer
    gpu = EngineBuffers()
    for line in CUDA_LOG.splitlines():
        gpu.feed(line)
    assert gpu.device_bytes() == pytest.approx((4403.50 + 4096 + 258.50) * MIB, abs=4)
    assert gpu.host_bytes() == pytest.approx((281.81 + 1.96 + 72.01) * MIB, abs=4)
    gpu.feed("sched_reserve:      CUDA0 compute buffer size =   300.00 MiB")  # reserved again: replaces
    assert gpu.by_kind()["compute"] == pytest.approx((300 + 72.01) * MIB, abs=4)


def test_the_estimate_of_the_bundled_model_matches_what_llama_server_logs() -> None:
    summary = read_gguf(bundled_model_path())
    estimate = estimate_llama_server(summary, context=512, slots=2)
    logged = EngineBuffers()
    for line in CPU_LOG.splitlines():
        logged.feed(line)
    assert estimate.host == 0
    assert estimate.parts["runtime"] == CPU_RUNTIME_BYTES
    buffers = estimate.device - CPU_RUNTIME_BYTES
    assert buffers == pytest.approx(logged.host_bytes(), rel=0.02)
    assert estimate.parts["kv"] == 22.5 * MIB and estimate.parts["output"] == 2 * 49152 * 4


def test_a_gpu_estimate_keeps_the_input_embedding_in_host_ram() -> None:
    summary = read_gguf(bundled_model_path())
    cpu = estimate_llama_server(summary, context=2048, slots=4)
    gpu = estimate_llama_server(summary, context=2048, slots=4, on_gpu=True)
    assert summary.embedding_bytes > 0 and summary.tied_embeddings
    # on the GPU: every layer, the KV, the compute and output buffers, the CUDA context; the tied
    # token embedding twice (once in RAM for the lookup, once on the GPU as the output layer)
    assert gpu.parts["weights"] == summary.tensor_bytes
    assert gpu.parts["runtime"] == round(0.57 * GIB)  # measured on an H200 (2026-12-03-agent-gpu.md)
    assert gpu.host >= summary.embedding_bytes
    assert gpu.parts["kv"] == cpu.parts["kv"]
    half = estimate_llama_server(summary, context=2048, slots=4, on_gpu=True, gpu_layers=15)
    assert half.parts["kv"] == cpu.parts["kv"] // 2
    assert half.host > gpu.host  # half the layers and their KV stay in RAM


def test_host_memory_is_capped_by_the_cgroup_limit_v2(tmp_path: Path) -> None:
    proc, cgroup = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text(
        "MemTotal:       16384000 kB\nMemFree:  1000 kB\nMemAvailable:   12000000 kB\n"
    )
    (proc / "self" / "cgroup").write_text("0::/user.slice/agent.service\n")
    group = cgroup / "user.slice" / "agent.service"
    group.mkdir(parents=True)
    (group / "memory.max").write_text(f"{4 * GIB}\n")
    (group / "memory.current").write_text(f"{3 * GIB}\n")
    (group / "memory.stat").write_text(f"anon 1\ninactive_file {GIB // 2}\n")
    (cgroup / "user.slice" / "memory.max").write_text("max\n")
    (cgroup / "user.slice" / "memory.current").write_text("1\n")
    reading = HostMemory(proc=proc, cgroup=cgroup).read()
    assert reading.total == 4 * GIB  # the limit, not MemTotal
    assert reading.free == 4 * GIB - (3 * GIB - GIB // 2)  # dropping the inactive page cache counts as free
    assert "cgroup" in reading.source
    (group / "memory.max").write_text("max\n")
    assert HostMemory(proc=proc, cgroup=cgroup).read().total == 16384000 * KIB


def test_a_parent_cgroups_limit_counts_v1(tmp_path: Path) -> None:
    proc, cgroup = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text("MemTotal: 8000000 kB\nMemAvailable: 7000000 kB\n")
    (proc / "self" / "cgroup").write_text("4:memory:/docker/abc\n0::/\n")
    parent, own = cgroup / "memory" / "docker", cgroup / "memory" / "docker" / "abc"
    own.mkdir(parents=True)
    (own / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # no limit of its own
    (own / "memory.usage_in_bytes").write_text(f"{GIB}\n")
    (parent / "memory.limit_in_bytes").write_text(f"{2 * GIB}\n")
    (parent / "memory.usage_in_bytes").write_text(f"{GIB}\n")
    (parent / "memory.stat").write_text("total_inactive_file 0\n")
    reading = HostMemory(proc=proc, cgroup=cgroup).read()
    assert (reading.total, reading.free) == (2 * GIB, GIB)


def test_a_process_resident_memory_is_read_from_proc(tmp_path: Path) -> None:
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "status").write_text("Name:\tllama-server\nVmRSS:\t  141980 kB\n")
    memory = HostMemory(proc=tmp_path, cgroup=tmp_path / "none")
    assert memory.process_bytes(42) == 141980 * KIB
    assert memory.process_bytes(43) is None


def test_gpu_memory_and_per_process_use_come_from_nvml() -> None:
    nvml = FakeNvml(RECORDINGS["rtx-4080-super"])
    nvml.nvmlInit()
    gpu = GpuMemory(nvml, 0)
    reading = gpu.read()
    assert (reading.total, reading.free) == (17171480576, 15172894720)
    assert gpu.process_bytes(5022) == 527433728
    assert gpu.process_bytes(1) is None
    jetson = FakeNvml(RECORDINGS["jetson-orin-nano"])
    jetson.nvmlInit()
    assert GpuMemory(jetson, 0).process_bytes(5022) is None  # "not supported": unknown, not zero
