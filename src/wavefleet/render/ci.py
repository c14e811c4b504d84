"""The model pipeline's CI job: a declarative Jenkinsfile for the inventory's CI runner.

Its stages call `wave model fetch`, `wave model quantize`, `wave model check` and `wave rollout
start`; the check stage sizes the file for the llama.cpp engine the job is run for (a `case` on the
ENGINE parameter holding each engine's device, context per slot, slots, RAM and GPU layers as the
render placed them). Its shell steps are single-quoted Groovy strings (`sh '''…'''`): Jenkins
passes the parameters as environment variables and Groovy interpolates nothing, so the text between
the quotes is exactly the shell script that runs, and `shell_steps` gives it back for shellcheck.
"""

from __future__ import annotations

import re

import jinja2

from wavefleet.engines import EngineKind
from wavefleet.render.spec import EngineSpec, FleetSpec
from wavefleet.render.templating import render_template

__all__ = ["JENKINSFILE", "QUANT_TYPES", "check_args", "jenkinsfile", "jenkinsfile_problems", "shell_steps"]

JENKINSFILE = "Jenkinsfile"
# The llama-quantize types offered, most used first (Q4_K_M: llama.cpp's usual trade-off).
QUANT_TYPES = ("Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "Q4_0", "IQ4_XS", "F16")
_SHELL_STEP = re.compile(r"\bsh\s+'''(.*?)'''", re.S)


def check_args(engine: EngineSpec) -> str:
    """`wave model check` options that describe `engine`'s placement (shell words, no quoting needed:
    ids and numbers only)."""
    words = ["--device", engine.device, "--ctx", str(engine.max_model_len), "--slots", str(engine.parallel)]
    if engine.host_ram_gib is not None:
        words += ["--host-ram-gib", f"{engine.host_ram_gib:g}"]
    if engine.n_gpu_layers is not None:
        words += ["--gpu-layers", str(engine.n_gpu_layers)]
    return " ".join(words)


def jenkinsfile(env: jinja2.Environment, fleet: FleetSpec) -> str:
    """The Jenkinsfile for `fleet.ci` (which must be set)."""
    assert fleet.ci is not None
    engines = [e for e in fleet.engines if e.kind is EngineKind.LLAMACPP]
    return render_template(
        env.overlay(trim_blocks=True, lstrip_blocks=True),  # block tags on lines of their own vanish
        "Jenkinsfile.j2",
        fleet=fleet,
        ci=fleet.ci,
        engines=engines,
        check_args={e.name: check_args(e) for e in engines},
        default_model=engines[0].model if engines else "my-model",
        quants=QUANT_TYPES,
    )


def shell_steps(text: str) -> list[str]:
    """The scripts of the Jenkinsfile's `sh '''…'''` steps, as they run."""
    return [_dedent(found) for found in _SHELL_STEP.findall(text)]


def _dedent(script: str) -> str:
    lines = script.strip("\n").splitlines()
    indent = min((len(line) - len(line.lstrip()) for line in lines if line.strip()), default=0)
    return "\n".join(line[indent:] for line in lines) + "\n"


def jenkinsfile_problems(text: str) -> list[str]:
    """What would break the Jenkinsfile: unbalanced brackets outside strings and comments, a
    backslash or `$` expansion Groovy would take from a shell step, a step not run with `set -eu`."""
    problems = []
    stack: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for number, line in enumerate(_without_strings(text).splitlines(), 1):
        for char in line:
            if char in "([{":
                stack.append(char)
            elif char in pairs and (not stack or stack.pop() != pairs[char]):
                problems.append(f"Jenkinsfile line {number}: {char!r} closes nothing open")
    if stack:
        problems.append(f"Jenkinsfile: {len(stack)} bracket(s) left open ({''.join(stack)})")
    for index, script in enumerate(shell_steps(text), 1):
        if "\\" in script:
            problems.append(
                f"Jenkinsfile shell step {index}: a backslash, which Groovy's ''' string would eat"
            )
        if not script.startswith(("set -eu\n", "set -eu ")):
            problems.append(f"Jenkinsfile shell step {index}: does not start with `set -eu`")
    return problems


def _without_strings(text: str) -> str:
    """`text` with Groovy strings and // comments blanked (line breaks kept)."""
    text = re.sub(r"'''.*?'''", lambda m: "\n" * m[0].count("\n"), text, flags=re.S)
    text = re.sub(r"'(?:[^'\\\n]|\\.)*'", "''", text)
    text = re.sub(r'"(?:[^"\\\n]|\\.)*"', '""', text)
    return re.sub(r"//[^\n]*", "", text)
