"""Sampling profiles of the server workers with py-spy, summarised per function.

``record()`` samples every worker of a running server for the duration of one scenario and writes
py-spy's raw (collapsed-stack) output; ``summarize()`` turns it into "self" time (the frame that
was on CPU) and "total" time (the frame anywhere on the stack), as percentages of all samples."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def executable() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def available() -> bool:
    return executable() is not None


def start(pids: list[int], out_dir: Path, name: str, seconds: float, rate: int = 250) -> list[subprocess.Popen[bytes]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for pid in pids:
        procs.append(
            subprocess.Popen(
                [
                    str(executable()),
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    str(rate),
                    "--duration",
                    str(max(1, round(seconds))),
                    "--format",
                    "raw",
                    "--output",
                    str(out_dir / f"{name}.{pid}.txt"),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    return procs


def wait(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match.group("file")
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match.group('func')} ({path})"


@dataclass
class Summary:
    samples: int
    self_pct: list[tuple[str, float]]
    total_pct: list[tuple[str, float]]

    def text(self, top: int = 25) -> str:
        lines = [f"samples: {self.samples}", "", "self % (on CPU in this function):"]
        lines += [f"  {pct:5.1f}  {name}" for name, pct in self.self_pct[:top]]
        lines += ["", "total % (function anywhere on the stack):"]
        lines += [f"  {pct:5.1f}  {name}" for name, pct in self.total_pct[:top]]
        return "\n".join(lines) + "\n"


def summarize(files: list[Path]) -> Summary:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for path in files:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [_short(f) for f in stack.split(";") if f and not f.startswith("process ")]
            frames = [f for f in frames if not f.startswith("thread ")]
            # Only the event-loop (main) thread: py-spy cannot tell an idle aiosqlite or
            # thread-pool thread blocked in C from a busy one, so their samples would drown the
            # real work (per-thread CPU times show those threads are nearly idle).
            if not frames or any(f.startswith("Thread._bootstrap ") for f in frames[:2]):
                continue
            samples += count
            own[frames[-1]] += count
            for name in set(frames):
                total[name] += count
    if not samples:
        return Summary(0, [], [])
    return Summary(
        samples,
        [(n, 100 * c / samples) for n, c in own.most_common(60)],
        [(n, 100 * c / samples) for n, c in total.most_common(120)],
    )
