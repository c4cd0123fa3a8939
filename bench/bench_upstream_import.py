"""Cold-start cost of the upstream client: `import costgate.claude.messages` against `import anthropic`.

Each figure is the median of 5 fresh interpreters reporting `-X importtime`'s cumulative time for
the module. A third figure is what `costgate.claude.messages` adds in the ApiFunction, where the handler
has already imported Powertools (costgate.observability) and pynamodb (which imports botocore and
so urllib3): the time of `import costgate.claude.messages` after those, measured in the same process.
With PYTHONDONTWRITEBYTECODE set (as in the dev shell) costgate's own modules are compiled on every
import, so that last figure includes compiling claude/messages.py; a layer that ships .pyc files skips it.
"""

import argparse
import statistics
import subprocess
import sys

RUNS = 5
ALREADY_IN_THE_API_FUNCTION = "import costgate.observability, costgate.dal.ledger"


def cold_import_ms(module: str, before: str = "") -> float:
    """Median over RUNS fresh interpreters of -X importtime's cumulative microseconds for `module`."""
    samples = []
    for _ in range(RUNS):
        script = f"{before}\nimport {module}" if before else f"import {module}"
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", script],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        lines = [line for line in result.stderr.splitlines() if line.rstrip().endswith(f"| {module}")]
        # The module's own line is the last one naming it; without it the module was already imported.
        samples.append(int(lines[-1].split("|")[1]) / 1000 if lines else 0.0)
    return statistics.median(samples)


def main() -> None:
    global RUNS  # noqa: PLW0603 - the run's size, chosen once from the command line
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run: every figure once, few repetitions")
    if parser.parse_args().quick:
        RUNS = 1
    upstream = cold_import_ms("costgate.claude.messages")
    marginal = cold_import_ms("costgate.claude.messages", before=ALREADY_IN_THE_API_FUNCTION)
    sdk = cold_import_ms("anthropic")
    print(f"import costgate.claude.messages (cold, alone):          {upstream:8.1f} ms")
    print(f"import costgate.claude.messages (after the handler's):  {marginal:8.1f} ms")
    print(f"import anthropic (cold):                         {sdk:8.1f} ms")
    if sys.flags.dont_write_bytecode:
        print("(PYTHONDONTWRITEBYTECODE is set: costgate's modules were compiled on each import)")
    print(f"=> anthropic takes {sdk / upstream:.1f}× the whole claude.messages, {sdk / marginal:.0f}× what it adds")


if __name__ == "__main__":
    main()
