"""`wave model`: the model pipeline a person or a CI job runs: fetch, quantize, check.

Each subcommand prints its progress on stderr (a bar on a terminal, a line every few seconds
in a CI log), its result on stdout, and writes one operator event (`wave audit --events`) to the
database `wave audit` reads: --db, else WAVE_DB, else the default; --no-audit writes none.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from wavefleet.cli.inventory_option import inventory_option
from wavefleet.errors import ChecksumError, WaveError

__all__ = ["model"]

# How often a CI log (no terminal) gets a progress line.
LOG_EVERY_S = 10.0


@click.group()
def model() -> None:
    """Fetch, quantize and check GGUF model files: the steps a CI job runs before a rollout.

    \b
    Examples:
      wave model fetch https://models.lan/qwen2.5-1.5b-instruct-f16.gguf --to /srv/wavefleet/models \\
                       --sha256 HEX
      wave model quantize /srv/wavefleet/models/qwen2.5-1.5b-instruct-f16.gguf \\
                          /srv/wavefleet/models/qwen2.5-1.5b-Q4_K_M.gguf --type Q4_K_M
      wave model check /srv/wavefleet/models/qwen2.5-1.5b-Q4_K_M.gguf --device ryzen-9-9900x \\
                       --ctx 8192 --slots 4 --host-ram-gib 64
      wave audit --events --action model
    """


def _db_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--no-audit", is_flag=True, help="Write no operator event for this run (`wave audit --events`)."
    )(command)
    return click.option(
        "--db",
        type=click.Path(path_type=Path, dir_okay=False),
        envvar="WAVE_DB",
        default=None,
        help="Database the operator event goes to [env WAVE_DB; default: the one `wave audit` reads, "
        "$XDG_DATA_HOME/wavefleet/wave.db].",
    )(command)


def _console() -> Console:
    """stderr, with long lines kept whole: a CI log keeps paths and digests on one line."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


# --- progress --------------------------------------------------------------------------------------


class _Bar:
    """Progress on stderr: a rich bar on a terminal, a plain line every LOG_EVERY_S elsewhere."""

    def __init__(self, console: Console, label: str, *, unit: str) -> None:
        self.console, self.label, self.unit = console, label, unit
        self.live = console.is_terminal
        self._progress: Progress | None = None
        self._task: Any = None
        self._last_line = 0.0
        self._final_printed = False
        self._started = time.monotonic()
        self._first: int | None = None

    def __enter__(self) -> _Bar:
        if self.live:
            columns: list[ProgressColumn | str] = [TextColumn("{task.description}"), BarColumn()]
            if self.unit == "bytes":
                columns += [DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
            else:
                columns += [MofNCompleteColumn(), TaskProgressColumn(), TimeRemainingColumn()]
            self._progress = Progress(*columns, console=self.console, transient=False)
            self._progress.start()
            self._task = self._progress.add_task(escape(self.label), total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, done: int, total: int | None) -> None:
        if self._first is None:
            self._first = done
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=total)
            return
        now = time.monotonic()
        if total is not None and done >= total:
            if not self._final_printed:
                self._final_printed = True
                self.console.print(self._line(done, total, now), markup=False, highlight=False)
        elif now - self._last_line >= LOG_EVERY_S:
            self._last_line = now
            self.console.print(self._line(done, total, now), markup=False, highlight=False)

    def _line(self, done: int, total: int | None, now: float) -> str:
        elapsed = max(now - self._started, 1e-6)
        rate = (done - (self._first or 0)) / elapsed
        if self.unit == "bytes":
            text = f"{self.label}: {_size(done)}" + (f" of {_size(total)}" if total else "")
            text += f", {_size(int(rate))}/s"
        else:
            text = f"{self.label}: {done} of {total if total else '?'} {self.unit}"
        if total:
            text += f" ({100 * done / total:.0f}%)"
            if rate > 0 and done < total:
                text += f", {_duration((total - done) / rate)} left"
        return text

    def say(self, text: str) -> None:
        self.console.print(escape(text), highlight=False)


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


# --- operator events -------------------------------------------------------------------------------


@contextmanager
def _event(
    console: Console, db: Path | None, no_audit: bool, action: str, subject: str
) -> Iterator[dict[str, Any]]:
    """Record one operator event when the block ends: ok, failed (ChecksumError, or an outcome the
    block sets) or error (any other Wavefleet error), with the details the block fills in."""
    record: dict[str, Any] = {"details": {}, "outcome": "ok", "subject": subject}
    try:
        yield record
    except ChecksumError as exc:
        record["outcome"] = "failed"
        record["details"]["error"] = str(exc)
        raise
    except WaveError as exc:
        record["outcome"] = "error"
        record["details"]["error"] = str(exc)
        raise
    except KeyboardInterrupt:
        record["outcome"] = "error"
        record["details"]["error"] = "interrupted"
        raise
    finally:
        if not no_audit:
            _write_event(console, db, action, record)


def _write_event(console: Console, db: Path | None, action: str, record: Mapping[str, Any]) -> None:
    from wavefleet.gateway.security.db import resolve_db_path
    from wavefleet.gateway.security.events import Event, EventOutcome, default_actor, record_event

    path = resolve_db_path(db)
    try:
        record_event(
            path,
            Event(
                actor=default_actor(),
                action=action,
                subject=str(record["subject"]),
                outcome=EventOutcome(record["outcome"]),
                details=record["details"],
            ),
        )
    except WaveError as exc:  # the step's own result stands; the person hears the trail missed it
        console.print(
            f"[yellow]warning:[/] the operator event was not recorded: {escape(str(exc))}", highlight=False
        )


# --- fetch -----------------------------------------------------------------------------------------


@model.command(name="fetch", short_help="Fetch a GGUF from a path or URL: verified, resumable, atomic.")
@click.argument("source")
@click.option(
    "--to",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Folder the file goes to (created if missing).",
)
@click.option("--name", help="File name in --to. Default: the source's own.")
@click.option(
    "--sha256", "sha256", help="Expected sha256. Default: read from SOURCE.sha256 beside the source."
)
@click.option(
    "--no-verify", is_flag=True, help="Take the file without a checksum (its sha256 is printed and recorded)."
)
@click.option("--force", is_flag=True, help="Replace a file of the same name that holds other content.")
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Resumes of a transfer that stops, within this run.",
)
@click.option(
    "--read-timeout",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Seconds without a byte before a transfer counts as stopped.",
)
@_db_options
def fetch(
    source: str,
    directory: Path,
    name: str | None,
    sha256: str | None,
    no_verify: bool,
    force: bool,
    retries: int,
    read_timeout: float,
    db: Path | None,
    no_audit: bool,
) -> None:
    """Fetch a GGUF file from a local path or an http(s) URL into a folder, verified and resumable.

    \b
    The bytes go to NAME.part in --to. When they are all there, the file must start with the GGUF
    magic and match its sha256 (--sha256, else the SOURCE.sha256 sidecar: a digest, or the line
    `sha256sum` prints); then NAME.part becomes NAME in one rename. A mismatch deletes NAME.part and
    leaves a NAME you had as it was. A transfer that stops is resumed with an HTTP Range request,
    here (--retries) or by running the same command again; a server that ignores Range sends the
    file from the start. A NAME that already holds the verified file is kept as it is (exit 0).

    \b
    Prints the file's path on stdout (progress and messages go to stderr), so a script can take it:
      path=$(wave model fetch https://models.lan/qwen2.5-1.5b-f16.gguf --to /srv/wavefleet/models)

    \b
    Exit status: 0 fetched (or already there), 1 the download failed or did not verify, 2 bad input
    (no checksum to verify against, a file of that name with other content, a bad path).
    Wavefleet downloads nothing by itself: this command fetches only what you name, from where
    you name it, through your network's proxy settings (HTTPS_PROXY, NO_PROXY).
    """
    from wavefleet.models.fetch import FetchRequest, display_url, fetch_model

    console = _console()
    request = FetchRequest(
        source=source,
        directory=directory,
        name=name,
        sha256=sha256,
        verify=not no_verify,
        force=force,
        retries=retries,
        read_timeout_s=read_timeout,
    )
    subject = str(directory / name) if name else str(directory)
    with _event(console, db, no_audit, "model.fetch", subject) as record:
        record["details"]["source"] = display_url(source)
        with _Bar(console, Path(name or display_url(source).rsplit("/", 1)[-1]).name, unit="bytes") as bar:
            result = fetch_model(request, bar)
        record["subject"] = str(result.path)
        record["details"].update(
            bytes=result.bytes,
            sha256=result.sha256,
            checksum_from=result.checksum_from,
            seconds=round(result.seconds, 3),
            already_there=result.already_there,
            resumed_from=result.resumed_from,
            resumes=result.resumes,
            restarts=result.restarts,
        )
    if result.already_there:
        console.print(
            escape(
                f"{result.path} already holds this file (sha256 {result.sha256} verified): nothing fetched"
            )
        )
    else:
        rate = (result.bytes - result.resumed_from) / max(result.seconds, 1e-6)
        verified = (
            f"sha256 {result.sha256} verified against {result.checksum_from}"
            if not no_verify or sha256
            else f"sha256 {result.sha256} (not verified: --no-verify)"
        )
        console.print(
            escape(
                f"fetched {result.path}: {result.bytes:,} bytes in {result.seconds:.1f} s "
                f"({_size(int(rate))}/s); {verified}"
            )
        )
    click.echo(str(result.path))


# --- check -----------------------------------------------------------------------------------------


@model.command(name="check", short_help="Check a GGUF: metadata, chat template, fit on a placement.")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--placement",
    help="A llama.cpp engine of the inventory, as `wave render` names it (llamacpp-ryzen-9-9900x, or "
    "a deployment id): its device, context, slots and RAM.",
)
@inventory_option("Inventory --placement is read from. Default: the bundled home-lab example.")
@click.option("--device", help="Catalog hardware id the model runs on (instead of --placement).")
@click.option(
    "--ctx", "context", type=click.IntRange(min=1), help="Tokens per slot. Default: the model's own context."
)
@click.option(
    "--slots", type=click.IntRange(min=1), help="Sequences at once (llama-server --parallel). Default 1."
)
@click.option(
    "--host-ram-gib",
    type=click.FloatRange(0, min_open=True),
    help="RAM the engine may use: needed for a CPU and for a layer split.",
)
@click.option(
    "--gpu-layers",
    type=click.IntRange(min=0),
    help="Layers on the GPU when the model is split between GPU and host RAM (llama.cpp -ngl).",
)
@click.option("--quant", "expect_type", help="The quantization the file must have, e.g. Q4_K_M.")
@click.option("--no-chat", is_flag=True, help="No chat template needed (a completion or embedding model).")
@click.option(
    "--format", "output_format", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the JSON report here (whole or not at all), e.g. for a CI job to archive.",
)
@_db_options
def check(
    file: Path,
    placement: str | None,
    inventory_path: Path | None,
    device: str | None,
    context: int | None,
    slots: int | None,
    host_ram_gib: float | None,
    gpu_layers: int | None,
    expect_type: str | None,
    no_chat: bool,
    output_format: str,
    out: Path | None,
    db: Path | None,
    no_audit: bool,
) -> None:
    """Check a GGUF file before serving it: readable and whole, its quantization, tokenizer and
    chat template, and whether it fits its placement.

    \b
    Checks:
      gguf            the gguf package reads it: header, metadata, every tensor inside the file
      context         the placement's context per slot is at most the model's own
      quantization    the file type (general.file_type); with --quant, the one asked for
      tokenizer       tokenizer.ggml.model and its tokens are there
      chat template   tokenizer.chat_template is there and renders a sample conversation (Jinja2
                      sandbox, as transformers and llama-cpp-python render it); --no-chat skips it
      fits placement  with --placement or --device: the sizing engine's estimate (the file's own
                      tensor bytes, KV cache for every slot, llama.cpp's compute buffer), as
                      `wave size --gguf` computes it

    \b
    Exit status: 0 every check passed, 1 one failed, 2 bad input (no such file, an unknown device).
    Writes one operator event with every verdict and the sizing numbers (`wave audit --events`).

    \b
    Examples:
      wave model check qwen2.5-1.5b-Q4_K_M.gguf
      wave model check qwen2.5-1.5b-Q4_K_M.gguf --device gtx-1650 --ctx 4096 --slots 4 --quant Q4_K_M
      wave model check llama-3.2-3b-Q4_K_M.gguf --placement llamacpp-ryzen-9-9900x --format json
    """
    import json

    from wavefleet.catalog import Catalog
    from wavefleet.errors import UsageError
    from wavefleet.files import write_atomic
    from wavefleet.models.check import CheckTarget, check_model, placement_from_inventory

    console = _console()
    manual = {"--device": device, "--ctx": context, "--slots": slots, "--host-ram-gib": host_ram_gib}
    manual["--gpu-layers"] = gpu_layers
    given = [name for name, value in manual.items() if value is not None]
    if placement is not None and given:
        raise UsageError(f"give --placement or {', '.join(given)}, not both")
    if device is None and given:
        raise UsageError(f"{', '.join(given)} describe a placement: add --device ID (a catalog hardware id)")
    if inventory_path is not None and placement is None:
        raise UsageError("--inventory is read for --placement: add --placement NAME")
    with _event(console, db, no_audit, "model.check", str(file.absolute())) as record:
        catalog = Catalog.load()
        where: CheckTarget | None = None
        if placement is not None:
            from wavefleet.plan.inventory import default_inventory_path

            where = placement_from_inventory(placement, inventory_path or default_inventory_path(), catalog)
        elif device is not None:
            catalog.get_hardware(device)  # an unknown id is bad input, named before the file is read
            where = CheckTarget(
                name=f"--device {device}",
                device=device,
                context=context,
                slots=slots or 1,
                host_ram_gib=host_ram_gib,
                gpu_layers=gpu_layers,
            )
        report = check_model(
            file, catalog=catalog, placement=where, expect_type=expect_type, chat=not no_chat
        )
        document = report.as_dict()
        record["outcome"] = "ok" if report.passed else "failed"
        record["details"].update(
            passed=report.passed,
            verdicts={c.name: c.passed for c in report.checks},
            failed={c.name: c.detail for c in report.checks if not c.passed},
            model=document["model"],
            placement=document["placement"],
            sizing=document["sizing"],
        )
        if out is not None:
            write_atomic(out, json.dumps(document, indent=2) + "\n")
    if output_format == "json":
        click.echo(json.dumps(document, indent=2))
    else:
        _print_report(report)
    if not report.passed:
        raise click.exceptions.Exit(1)


def _print_report(report: Any) -> None:
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=False)
    model = report.model
    if model:
        console.print(
            escape(
                f"{report.path}: {model['name']} · {model['architecture']} · {model['parameters'] / 1e9:.3g}e9 "
                f"parameters · {model['file_type']} · {model['file_bytes']:,} bytes"
            )
        )
    else:
        console.print(escape(str(report.path)))
    table = Table(show_header=True)
    table.add_column("check")
    table.add_column("verdict")
    table.add_column("detail", overflow="fold")
    for item in report.checks:
        verdict = "[green]pass[/]" if item.passed else "[bold red]FAIL[/]"
        table.add_row(escape(item.name), verdict, escape(item.detail))
    console.print(table)
    failed = [c.name for c in report.checks if not c.passed]
    if failed:
        console.print(f"[bold red]failed:[/] {escape(', '.join(failed))}")
    else:
        console.print(f"[green]passed:[/] all {len(report.checks)} checks")


# --- quantize --------------------------------------------------------------------------------------


@model.command(name="quantize", short_help="Quantize a GGUF with llama.cpp's llama-quantize, atomically.")
@click.argument("source", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("target", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--type",
    "quant_type",
    default="Q4_K_M",
    show_default=True,
    help="A type llama-quantize lists (`llama-quantize --help`): Q4_K_M, Q5_K_M, Q6_K, Q8_0, F16 …",
)
@click.option(
    "--allow-requantize",
    is_flag=True,
    help="Quantize a file that is quantized already (quality suffers: start from F16/BF16 where you can).",
)
@click.option(
    "--imatrix",
    type=click.Path(path_type=Path, dir_okay=False),
    help="An importance matrix (llama-imatrix) for the low-bit types.",
)
@click.option("--threads", type=click.IntRange(min=1), help="Threads. Default: every core.")
@click.option("--force", is_flag=True, help="Replace TARGET when it exists (once the new file is whole).")
@click.option(
    "--llama-quantize",
    "binary",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="WAVE_LLAMA_QUANTIZE",
    show_envvar=True,
    help="The llama-quantize to run. Default: the one built into the llama_cpp package, else PATH.",
)
@_db_options
def quantize(
    source: Path,
    target: Path,
    quant_type: str,
    allow_requantize: bool,
    imatrix: Path | None,
    threads: int | None,
    force: bool,
    binary: Path | None,
    db: Path | None,
    no_audit: bool,
) -> None:
    """Quantize a GGUF file with llama.cpp's own llama-quantize, writing TARGET whole or not at all.

    \b
    The tool is the llama-quantize built with the engine (llama_cpp/bin/ of the llama-cpp-python
    build that also makes llama-server), so the file it writes is one the engine reads. It writes
    into a temporary file beside TARGET; only a run that exits 0 and leaves a readable GGUF of the
    asked type becomes TARGET (one rename), so a failed or interrupted run leaves TARGET as it was.
    Progress is the tool's own count of tensors.

    \b
    Exit status: 0 written, 1 llama-quantize failed, 2 bad input (no such file, not a GGUF, a type
    it does not list, TARGET exists without --force, no llama-quantize installed).

    \b
    Examples:
      wave model quantize qwen2.5-1.5b-f16.gguf qwen2.5-1.5b-Q4_K_M.gguf --type Q4_K_M
      wave model quantize llama-3.2-3b-bf16.gguf llama-3.2-3b-Q8_0.gguf --type Q8_0 --threads 8
    """
    from wavefleet.models.quantize import QuantizeRequest, find_llama_quantize, quantize_model

    console = _console()
    with _event(console, db, no_audit, "model.quantize", str(target.absolute())) as record:
        record["details"].update(source=str(source.absolute()), type=quant_type.upper())
        tool = find_llama_quantize(binary)
        record["details"]["tool"] = str(tool.path)
        request = QuantizeRequest(
            source=source,
            target=target,
            type=quant_type,
            allow_requantize=allow_requantize,
            imatrix=imatrix,
            threads=threads,
            force=force,
        )
        with _Bar(console, target.name, unit="tensors") as bar:
            result = quantize_model(request, tool, bar)
        record["details"].update(
            file_type=result.file_type,
            source_bytes=result.source_bytes,
            bytes=result.bytes,
            tensors=result.tensors,
            seconds=round(result.seconds, 3),
            tool_version=result.tool_version,
            allow_requantize=allow_requantize,
        )
    console.print(
        escape(
            f"quantized {result.path}: {result.file_type}, {result.bytes:,} bytes from {result.source_bytes:,} "
            f"({result.bytes / max(result.source_bytes, 1):.0%}), {result.tensors} tensors in {result.seconds:.1f} s"
        )
    )
    click.echo(str(result.path))
