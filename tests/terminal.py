"""A real terminal for the wizard's tests: the tool runs on a pseudo-terminal of a given size, and
pyte (a VT100 emulator) keeps the screen a person would see, so a test reads the screen itself,
line breaks, scrolling and carriage returns included, and saves it as a text capture."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import time
from pathlib import Path
from types import TracebackType
from typing import IO

import pyte  # type: ignore[import-untyped]


class Terminal:
    """`command` on a columns x lines terminal (stdin and stderr; stdout where the caller says),
    with the screen as pyte renders it."""

    def __init__(
        self,
        command: list[str],
        *,
        cwd: Path,
        env: dict[str, str],
        columns: int = 80,
        lines: int = 24,
        stdout: IO[bytes] | None = None,
    ) -> None:
        self.screen = pyte.Screen(columns, lines)
        self.stream = pyte.ByteStream(self.screen)
        self.transcript = b""
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
        self._master = master
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env={**env, "TERM": "xterm", "LINES": str(lines), "COLUMNS": str(columns)},
            stdin=slave,
            stdout=stdout if stdout is not None else slave,
            stderr=slave,
            start_new_session=True,  # the pty becomes its controlling terminal
        )
        os.close(slave)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        os.close(self._master)

    def _pump(self, timeout: float) -> bool:
        ready, _, _ = select.select([self._master], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self._master, 65536)
        except OSError:  # the other side closed: the process ended
            return False
        self.transcript += data
        self.stream.feed(data)
        return bool(data)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        """Read the terminal until `text` shows on the screen."""
        deadline = time.monotonic() + timeout
        while text not in self.text():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never showed; the screen:\n{self.text()}")
            if not self._pump(0.2) and self.process.poll() is not None:
                self._pump(0.2)
                if text not in self.text():
                    raise AssertionError(f"exited before {text!r}; the screen:\n{self.text()}")

    def wait_exit(self, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"still running; the screen:\n{self.text()}")
            self._pump(0.2)
        while self._pump(0.2):
            pass
        return int(self.process.returncode)

    def type(self, keys: str) -> None:
        os.write(self._master, keys.encode())

    def lines(self) -> list[str]:
        """The screen, line by line, without trailing blanks."""
        return [line.rstrip() for line in self.screen.display]

    def text(self) -> str:
        return "\n".join(self.lines())

    def save(self, path: Path) -> None:
        """A text capture of the screen, framed the size it is."""
        width = self.screen.columns
        frame = "+" + "-" * width + "+"
        body = [f"|{line:<{width}}|" for line in self.screen.display]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join([frame, *body, frame]) + "\n", encoding="utf-8")
