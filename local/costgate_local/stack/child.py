"""`costgate serve` as a child process: start it, read its ready line, hand its resources to a script.

The demo (`make run`) drives the stack the way a user's script would: through the ready line, the
API on loopback and the environment the other `costgate` commands read.
"""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Self

READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
COSTGATE = Path(sys.executable).parent / "costgate"


class StackError(RuntimeError):
    """The local stack did not start."""


class LocalStack:
    """A running `costgate serve`; stopped (SIGTERM, then waited for) when the block ends."""

    def __init__(self, *serve_args: str, log: Path | None = None) -> None:
        self._args = [str(COSTGATE), "serve", "--port", "0", *serve_args]
        self._log_path = log
        self._process: subprocess.Popen[str] | None = None
        self.ready: dict[str, Any] = {}

    def __enter__(self) -> Self:
        log = self._log_path.open("w", encoding="utf-8") if self._log_path else subprocess.DEVNULL
        try:
            self._process = subprocess.Popen(self._args, stdout=subprocess.PIPE, stderr=log, text=True)  # noqa: S603
        finally:
            if self._log_path:
                log.close()  # type: ignore[union-attr]
        try:
            line = _read_line(self._process, READY_TIMEOUT_S)
            self.ready = json.loads(line)
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop()

    @property
    def base_url(self) -> str:
        return str(self.ready["base_url"])

    def environ(self) -> dict[str, str]:
        """What the other `costgate` commands (and boto3, pynamodb) need to reach the same resources."""
        environ = {
            "AWS_ENDPOINT_URL": self.ready["aws_endpoint_url"],
            "COSTGATE_TABLE": self.ready["table"],
            "COSTGATE_BUCKET": self.ready["bucket"],
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        if "admin_api_key" in self.ready:  # the simulator serves the Admin API beside the Claude API
            environ |= {
                "ANTHROPIC_ADMIN_API_KEY": self.ready["admin_api_key"],
                "COSTGATE_ADMIN_API_URL": self.upstream_url,
            }
        return environ

    @property
    def upstream_url(self) -> str:
        return str(self.ready["upstream_url"])

    def _stop(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)


def _read_line(process: "subprocess.Popen[str]", timeout: float) -> str:
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    if not lines or not lines[0]:
        status = process.poll()
        detail = f"it exited with status {status}" if status is not None else f"no ready line within {timeout:.0f} s"
        raise StackError(f"costgate serve did not start: {detail}")
    return lines[0]


def child_environment(stack: LocalStack) -> dict[str, str]:
    """This process's environment plus the stack's: for `costgate` commands run as child processes."""
    return {**os.environ, **stack.environ()}
