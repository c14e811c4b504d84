"""`wave sim`: start simulated engines that behave like the person's GPUs and CPUs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click
from rich.console import Console

from wavefleet.errors import UsageError
from wavefleet.sim.faults import FaultConfig
from wavefleet.sim.fleet import SimFleet
from wavefleet.sim.profile import SimProfile
from wavefleet.terminal import fit, folding_table

__all__ = ["sim"]


@click.command(
    "sim",
    epilog="""\b
Examples:
  wave sim --list-profiles
  wave sim --profile rtx5070ti-vllm --port 8000
  wave sim --profile ryzen9900x-llamacpp --speed 10 --fault-error-rate 0.02
  wave sim --profile embedded-smollm2-135m                  # fitted to the real embedded engine
  wave sim --profile my-fit.yaml --name bench-target        # a profile file
  wave sim --inventory examples/home-lab.yaml --out wave.yaml --base-port 9000
  wave serve --config wave.yaml                              # then route across them

\b
--speed S runs every modelled duration S times faster: the engines behave like devices S times
as fast, so /metrics histograms, llama.cpp rates and the gateway profile written by --inventory
are all in wall-clock units at that speed (multiply latencies by S to read device time).""",
)
@click.option(
    "--profile", "profile_ref", metavar="NAME|FILE", help="built-in or calibrated profile, or a YAML file"
)
@click.option("--inventory", type=click.Path(path_type=Path, dir_okay=False), help="simulate its deployments")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("wave.yaml"),
    show_default=True,
    help="gateway config written for --inventory",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=0, help="port for --profile (0: any free port)"
)
@click.option(
    "--base-port",
    type=click.IntRange(0, 65535),
    default=0,
    help="first port for --inventory, then +1 each (0: any free)",
)
@click.option("--name", help="engine name (default: the profile's)")
@click.option(
    "--speed",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="time scale: 10 = ten times faster",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="seed for jitter, output lengths and faults"
)
@click.option(
    "--fault-error-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="fraction answered 500 before streaming",
)
@click.option("--fault-hang-rate", type=click.FloatRange(0, 1), default=0.0, help="fraction never answered")
@click.option(
    "--fault-cut-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="fraction whose connection is closed mid-stream",
)
@click.option(
    "--fault-inband-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="fraction with an error event mid-stream under a 200",
)
@click.option(
    "--detach",
    is_flag=True,
    help="run in the background: return once the engines listen (and --out is written), "
    "leaving wave-sim.pid and wave-sim.log in the current directory",
)
@click.option("--list-profiles", is_flag=True, help="list built-in and calibrated profiles and exit")
def sim(
    profile_ref: str | None,
    inventory: Path | None,
    out: Path,
    host: str,
    port: int,
    base_port: int,
    name: str | None,
    speed: float,
    seed: int,
    fault_error_rate: float,
    fault_hang_rate: float,
    fault_cut_rate: float,
    fault_inband_rate: float,
    detach: bool,
    list_profiles: bool,
) -> None:
    """Start simulated engines: the OpenAI API, each engine's metrics dialect, and a latency model
    with continuous batching, slots, a KV cache, a prefix cache, queueing and fault injection.

    Give --profile for one engine or --inventory for one engine per planned deployment; they
    serve until Ctrl-C.
    """
    from wavefleet.catalog.loader import Catalog
    from wavefleet.sim.profiles import resolve_profile

    console = Console()
    if detach and not list_profiles:
        _detach(console)
        return
    catalog = Catalog.load()
    if list_profiles:
        _print_profiles(console, catalog)
        return
    if (profile_ref is None) == (inventory is None):
        raise UsageError(
            "give exactly one of --profile NAME|FILE or --inventory FILE (see `wave sim --help`)"
        )
    try:
        faults = FaultConfig(
            error_rate=fault_error_rate,
            hang_rate=fault_hang_rate,
            cut_rate=fault_cut_rate,
            inband_error_rate=fault_inband_rate,
        )
    except ValueError as exc:
        raise UsageError("the --fault-* rates add up to more than 1; lower them") from exc
    if profile_ref is not None:
        profile = resolve_profile(profile_ref, catalog)
        if name:
            profile = profile.model_copy(update={"name": name})
        fleet = SimFleet([profile], speed=speed, seed=seed, faults=faults, host=host, ports=[port])
        _run(console, fleet, speed)
        return
    assert inventory is not None
    from wavefleet.sim.inventory import plan_fleet, write_gateway_config

    planned = plan_fleet(inventory, catalog)
    for skipped in planned.skipped:
        console.print(f"[yellow]skipped[/] {skipped.deployment}: {skipped.reason}")
    if not planned.profiles:
        raise UsageError(f"{inventory}: no deployment the simulator can profile; see the reasons above")
    ports = [base_port + i if base_port else 0 for i in range(len(planned.profiles))]
    fleet = SimFleet(planned.profiles, speed=speed, seed=seed, faults=faults, host=host, ports=ports)

    def write_config(urls: dict[str, str]) -> None:
        write_gateway_config(planned, urls, speed, out)
        console.print(f"wrote gateway config {out} (`wave serve --config {out}`)")

    _run(console, fleet, speed, write_config)


PID_FILE, LOG_FILE = Path("wave-sim.pid"), Path("wave-sim.log")
_READY = "serving; Ctrl-C stops"


def _detach(console: Console) -> None:
    """Run this same command without --detach in a new session, its output in LOG_FILE; return
    once it says it serves (exit 0, PID_FILE written) or once it ends (its exit code)."""
    running = _running_pid(PID_FILE)
    if running is not None:
        raise UsageError(
            f"a detached wave sim already runs here (pid {running}); stop it with `kill {running}`, "
            f"or run this one from another directory"
        )
    argv = [sys.executable, "-m", "wavefleet", *(a for a in sys.argv[1:] if a != "--detach")]
    with LOG_FILE.open("w") as log:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in this terminal later does not reach it
            env={**os.environ, "COLUMNS": os.environ.get("COLUMNS", "120")},
        )
    while child.poll() is None and _READY not in LOG_FILE.read_text(errors="replace"):
        time.sleep(0.1)
    output = LOG_FILE.read_text(errors="replace")
    if child.returncode is not None:
        Console(stderr=True, highlight=False).print(output, markup=False, end="")
        raise SystemExit(child.returncode)
    PID_FILE.write_text(f"{child.pid}\n")
    console.print(output.replace(_READY, "").rstrip(), markup=False, highlight=False)
    console.print(
        f"simulated engines running in the background (pid {child.pid}, log {LOG_FILE}); "
        f"stop them with `kill {child.pid}` or `kill $(cat {PID_FILE})`",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def _running_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _run(
    console: Console,
    fleet: SimFleet,
    speed: float,
    on_started: Callable[[dict[str, str]], None] | None = None,
) -> None:
    async def serve() -> None:
        try:
            await fleet.start()
        except OSError as exc:
            raise UsageError(
                f"cannot listen: {exc}; pick other ports (--port/--base-port, 0 = any free)"
            ) from exc
        try:
            if on_started is not None:
                on_started(fleet.urls)
            _print_fleet(console, [s.profile for s in fleet.servers.values()], fleet.urls, speed)
            console.print("serving; Ctrl-C stops")
            await asyncio.Event().wait()
        finally:
            await fleet.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


def _print_fleet(console: Console, profiles: list[SimProfile], urls: dict[str, str], speed: float) -> None:
    table = folding_table(
        "name",
        "dialect",
        "url",
        "model",
        "device",
        "slots",
        "KV tokens",
        "prefill tok/s",
        "decode tok/s",
        title=f"simulated engines (speed x{speed:g})",
    )
    for p in profiles:
        table.add_row(
            p.name, p.dialect.value, urls[p.name], p.model, p.device or "-", str(p.max_num_seqs),
            str(p.kv_capacity_tokens), f"{p.prefill_tokens_per_s:.0f}", f"{1 / p.itl_at(1):.1f}",
        )  # fmt: skip
    console.print(fit(table, console))
    for p in profiles:
        console.print(f"[dim]{p.name}: basis: {'; '.join(p.basis[:3])}[/]")
    for p in profiles:  # one plain line each, for scripts
        console.print(f"listening {p.name} {urls[p.name]}", highlight=False, soft_wrap=True)


def _print_profiles(console: Console, catalog: object) -> None:
    from wavefleet.catalog.loader import Catalog
    from wavefleet.sim.profiles import BUILTIN_SPECS, calibrated_profile_paths, profile_from_spec

    assert isinstance(catalog, Catalog)
    table = folding_table(
        "name",
        "dialect",
        "device",
        "model",
        "slots",
        "prefill tok/s",
        "decode tok/s",
        "basis",
        title="simulator profiles (estimates from the sizing engine, or calibrated fits)",
    )
    for spec in BUILTIN_SPECS:
        p = profile_from_spec(spec, catalog)
        table.add_row(p.name, p.dialect.value, spec.device, f"{spec.model} {spec.quant}", str(p.max_num_seqs),
                      f"{p.prefill_tokens_per_s:.0f}", f"{1 / p.itl_at(1):.1f}", "sizing estimate")  # fmt: skip
    from wavefleet.sim.profile import load_profile

    for name, path in sorted(calibrated_profile_paths().items()):
        p = load_profile(path)
        table.add_row(name, p.dialect.value, p.device or "this machine", p.model, str(p.max_num_seqs),
                      f"{p.prefill_tokens_per_s:.0f}", f"{1 / p.itl_at(1):.1f}", "calibrated")  # fmt: skip
    console.print(fit(table, console))
