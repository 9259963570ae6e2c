"""The one subprocess runner: real short processes (sh, python), its limits, its streaming,
its stdin, and that nothing it started outlives a stop or a Ctrl-C."""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from ecr_release.errors import DockerError
from ecr_release.outside.process import TIMED_OUT, Result, SubprocessRunner


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (killed, waiting to be reaped)."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (FileNotFoundError, ProcessLookupError):
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _gone(*pids: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class Writes(io.StringIO):
    """A stream that remembers each write, to see what arrived in one piece."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def test_subprocess_runner_missing_binary() -> None:
    runner = SubprocessRunner(out=io.StringIO())
    with pytest.raises(DockerError) as info:
        runner(["/nonexistent/bin/docker-xyz", "version"])
    message = info.value.message
    assert "'/nonexistent/bin/docker-xyz' command was not found" in message
    assert "install Docker" in message


_SCRIPT = (
    "import sys\n"
    "print('to stdout', flush=True)\n"
    "print('to stderr', file=sys.stderr, flush=True)\n"
    "print('again stdout', flush=True)\n"
    "sys.exit(3)\n"
)


def test_subprocess_runner_captures_both_streams_and_the_exit_code() -> None:
    out = io.StringIO()
    result = SubprocessRunner(out=out)([sys.executable, "-c", _SCRIPT])
    assert result.returncode == 3
    assert result.output == "to stdout\nto stderr\nagain stdout\n"
    assert out.getvalue() == ""


def test_subprocess_runner_streams_when_asked() -> None:
    out = io.StringIO()
    result = SubprocessRunner(out=out)([sys.executable, "-c", _SCRIPT], stream=True)
    assert out.getvalue() == "to stdout\nto stderr\nagain stdout\n"
    assert result.output == out.getvalue()


def test_subprocess_runner_streams_to_stdout_by_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    SubprocessRunner()([sys.executable, "-c", "print('hello')"], stream=True)
    assert capsys.readouterr().out == "hello\n"


def test_subprocess_runner_passes_input_on_stdin() -> None:
    script = "import sys; data = sys.stdin.read(); print(repr(data))"
    result = SubprocessRunner(out=io.StringIO())([sys.executable, "-c", script], input="s3cr3t\n")
    assert result.returncode == 0
    assert result.output == "'s3cr3t\\n'\n"


def test_subprocess_runner_without_input_gives_an_empty_stdin() -> None:
    script = "import sys; print(repr(sys.stdin.read()))"
    result = SubprocessRunner(out=io.StringIO())([sys.executable, "-c", script])
    assert result.output == "''\n"


def test_subprocess_runner_survives_a_child_that_ignores_stdin() -> None:
    result = SubprocessRunner(out=io.StringIO())(
        [sys.executable, "-c", "import sys; sys.exit(0)"], input="x" * 200_000
    )
    assert result.returncode == 0


# -- the limits -----------------------------------------------------------------------------


def test_a_command_that_never_answers_is_killed_at_the_timeout() -> None:
    started = time.monotonic()
    result = SubprocessRunner(io.StringIO())(["sh", "-c", "sleep 30"], timeout=0.5)
    took = time.monotonic() - started
    assert 0.5 <= took < 3
    assert result == Result(
        TIMED_OUT, "sh gave no answer within 0.5 s\n", "gave no answer within 0.5 s", "timeout"
    )
    assert result.returncode == 124 and result.timed_out


def test_a_command_that_prints_then_goes_silent_is_killed_at_the_idle_limit() -> None:
    out = io.StringIO()
    started = time.monotonic()
    result = SubprocessRunner(out)(
        ["sh", "-c", "echo working; sleep 0.4; echo still; sleep 30"], stream=True, idle=1.0
    )
    took = time.monotonic() - started
    assert 1.4 <= took < 4  # the silence counts from the last line, not the start
    assert result.returncode == TIMED_OUT
    assert (result.limit, result.stopped) == ("idle", "printed nothing for 1 s")
    assert result.output == "working\nstill\nsh printed nothing for 1 s\n"
    assert out.getvalue() == "working\nstill\n"  # the runner's own line is not streamed


def test_output_keeps_a_command_going_past_its_idle_limit() -> None:
    script = "for i in 1 2 3 4 5 6 7 8; do echo $i; sleep 0.15; done"
    result = SubprocessRunner(io.StringIO())(["sh", "-c", script], idle=0.6)
    assert result.returncode == 0 and not result.timed_out
    assert result.output.split() == [str(i) for i in range(1, 9)]


def test_the_total_limit_holds_while_output_keeps_coming() -> None:
    started = time.monotonic()
    result = SubprocessRunner(io.StringIO())(
        ["sh", "-c", "while true; do echo tick; sleep 0.05; done"], timeout=0.6, idle=5
    )
    assert time.monotonic() - started < 3
    assert (result.limit, result.stopped) == ("timeout", "did not finish within 0.6 s")
    assert result.output.startswith("tick\n")
    assert result.output.endswith("sh did not finish within 0.6 s\n")


def test_the_runners_cap_applies_to_every_call() -> None:
    runner = SubprocessRunner(io.StringIO(), timeout=0.5)
    started = time.monotonic()
    result = runner(["sleep", "30"], timeout=10)  # the tighter limit wins
    assert time.monotonic() - started < 3
    assert result.stopped == "gave no answer within 0.5 s"
    assert runner(["sh", "-c", "echo fine"], timeout=10) == Result(0, "fine\n")


@pytest.mark.parametrize("which", ["timeout", "idle"])
def test_a_stop_kills_the_grandchildren_too(which: str) -> None:
    # sh starts two background sleeps and waits: the whole process group must go.
    script = "sleep 30 & echo $!; sleep 30 & echo $!; echo $$; wait"
    run = SubprocessRunner(io.StringIO())
    result = (
        run(["sh", "-c", script], timeout=0.5)
        if which == "timeout"
        else run(["sh", "-c", script], idle=0.5)
    )
    assert result.limit == which
    pids = [int(word) for word in result.output.split() if word.isdigit()]
    assert len(pids) == 3
    assert _gone(*pids)


def test_ctrl_c_kills_the_command_and_what_it_started() -> None:
    out = Writes()
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            SubprocessRunner(out)(
                ["sh", "-c", "sleep 30 & echo $!; echo $$; wait"], stream=True, timeout=20
            )
    finally:
        timer.cancel()
    assert time.monotonic() - started < 5
    pids = [int(word) for word in out.getvalue().split()]
    assert len(pids) == 2
    assert _gone(*pids)


# -- streaming and stdin ---------------------------------------------------------------------


def test_streamed_output_arrives_as_it_comes_in_whole_lines() -> None:
    out = Writes()
    script = (
        "import sys, time\n"
        "sys.stdout.write('half a'); sys.stdout.flush(); time.sleep(0.2)\n"
        "sys.stdout.write(' line\\nand '); sys.stdout.flush(); time.sleep(0.2)\n"
        "sys.stderr.write('more\\n'); sys.stderr.flush()\n"
        "sys.stdout.write('no end')\n"
    )
    seen_at: list[float] = []
    started = time.monotonic()
    original = out.write

    def write(text: str) -> int:
        seen_at.append(time.monotonic() - started)
        return original(text)

    out.write = write  # type: ignore[method-assign]
    result = SubprocessRunner(out)([sys.executable, "-c", script], stream=True)
    assert result == Result(0, "half a line\nand more\nno end")
    assert out.getvalue() == result.output
    # never part of a line, and the first one before the command ended
    assert out.writes == ["half a line\n", "and more\n", "no end"]
    assert seen_at[0] < seen_at[-1] - 0.1


def test_crlf_and_bad_bytes_read_as_text() -> None:
    result = SubprocessRunner(io.StringIO())(["printf", "a\\r\\nb\\377\\n"])
    assert result.output == "a\nb\ufffd\n"


def test_a_large_stdin_and_a_large_output_at_once_do_not_deadlock() -> None:
    data = "".join(f"line {i:07d}\n" for i in range(100_000))  # 1.3 MB each way
    result = SubprocessRunner(io.StringIO())(["cat"], input=data, timeout=20)
    assert result.returncode == 0
    assert result.output == data


def test_stdin_is_closed_after_the_input_so_a_reader_ends() -> None:
    result = SubprocessRunner(io.StringIO())(["sh", "-c", "cat; echo done"], input="", timeout=5)
    assert result == Result(0, "done\n")


def test_the_environment_is_the_runners() -> None:
    runner = SubprocessRunner(io.StringIO(), env={"PATH": os.environ["PATH"], "ONLY": "this"})
    assert runner(["sh", "-c", "echo ${ONLY}${HOME:-no-home}"]) == Result(0, "thisno-home\n")
    with pytest.raises(DockerError, match="'no-such-docker' command was not found"):
        runner(["no-such-docker", "--version"])


def test_a_line_cut_off_by_a_stop_is_ended_before_the_runners_own() -> None:
    out = Writes()
    result = SubprocessRunner(out)(
        ["sh", "-c", "printf 'Pushing layer'; sleep 30"], stream=True, idle=0.5
    )
    assert out.writes == ["Pushing layer\n"]
    assert result.output == "Pushing layer\nsh printed nothing for 0.5 s\n"
