"""``python -m ops.supervisord -c supervisord.conf -n``: the fleet's supervisord.

It is supervisord itself (same options, same config, same XML-RPC), with two changes to what
a freshly forked child does before it execs its program. supervisord closes the descriptors
it may have inherited, 3 up to ``minfds``, with one ``os.close`` call each, so a spawn costs
CPU in proportion to ``minfds`` whatever the program: measured here, 12 ms per spawn at our
``minfds = 8192`` and 99 ms at 65,536 (a hundred collectors starting: 1.2 s and 10 s of CPU
before any of them runs a line). Here the child closes the same range with one
``os.closerange`` call (close_range(2) on Linux 5.9 and newer, a loop in C elsewhere):
0.01 ms, and the same descriptors end up closed.

The first change wraps supervisord's own ``_prepare_child_fds`` of each process class: its
redirections of stdin, stdout and stderr run unchanged, with ``minfds`` lowered to 3 in the
child while they run (so its own loop has nothing left to close), then the whole range is
closed at once. It runs in the forked child only, which execs next or exits, so supervisord
itself never sees the lowered value. Should a release of supervisor close the range some
other way, the wrapper still closes exactly 3 up to ``minfds``: what supervisord promises.

A second change starts collectors without an exec. A new interpreter spends most of a
collector's start-up importing (trio, trio-websocket, structlog, our modules): measured
here, 100 collectors started at once on 2 cores needed 13-17 s, ~230 ms of CPU each, to
be connected, against 2.7-3.0 s and 25-32 ms each when forked from a supervisord that had
imported the collector once (``make bench``). So this supervisord imports the collector's
modules once, at start (:data:`PRELOAD`), and a child whose program is ``python -m
collector ...`` run by this very interpreter (the same ``sys.executable`` path, no
``PYTHON*`` variable of its own, not ``rebuild``) runs the collector where supervisord
would exec it (:func:`run_collector`): after supervisord's own child set-up (process group, stdio,
descriptors closed, user, directory, umask), with the program's environment, fresh stdio
objects, default signal handlers and supervisord's garbage collected before the collector
opens a file. The process supervisord watches is the collector itself: same pid, signals,
stop and exit code as an exec'd one; ``ps`` shows supervisord's command line for it, and
the name ``collector`` (``/proc/PID/comm``). Any other program execs as before, and so does
a collector program that runs as another user than supervisord (``user``: nothing of
supervisord's memory may stay with it), or when the preload failed (logged on
supervisord's stderr), when a file the preload read has changed since (a deploy: the
collectors then run the code on disk, and a restart of supervisord makes their start fast
again), or when its directory holds another ``collector`` package (which ``-m`` would
import).
"""

from __future__ import annotations

import gc
import importlib
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NoReturn

from supervisor import options, process, supervisord

# The process classes whose forked child runs _prepare_child_fds (FastCGI has its own).
CHILD_CLASSES = (process.Subprocess, process.FastCGISubprocess)


def _closing_at_once(prepare: Callable[[Any], None]) -> Callable[[Any], None]:
    """``prepare`` (a ``_prepare_child_fds``) with the descriptor range closed in one call."""

    def prepare_child_fds(self: Any) -> None:
        options = self.config.options
        minfds = options.minfds
        options.minfds = 3  # in the forked child only (see the module docstring)
        try:
            prepare(self)
        finally:
            options.minfds = minfds
        os.closerange(3, minfds)

    prepare_child_fds.__wrapped__ = prepare  # type: ignore[attr-defined]
    return prepare_child_fds


# What a collector imports to start (a book stream's REST client included), imported once by
# supervisord so that its children need not.
PRELOAD = ("collector.__main__", "collector.app", "collector.bookhandlers", "collector.rest")
COLLECTOR_MODULE = "collector"
_preloaded = False
# The user supervisord imported the collector as: a program that runs as another (its
# ``user`` setting) is exec'd, so that nothing of supervisord's memory stays with it.
_preload_uids: tuple[int, int] | None = None
# Each source file the preload read (path, mtime in ns, size): a child runs the collector
# in place only while they are unchanged, so that after a deploy (a pull, a pip upgrade)
# the collectors started meanwhile are exec'd, and run the code on disk.
_sources: list[tuple[str, int, int]] = []
# supervisord's stdio objects, replaced in a collector's child: kept so that they are never
# finalised there (they wrap descriptors 0-2, which are the collector's own by then).
_kept: list[object] = []


def preload() -> bool:
    """Import :data:`PRELOAD` (once); False, with the reason on stderr, when that fails: the
    collectors are then exec'd, as any program."""
    global _preloaded, _preload_uids
    if not _preloaded:
        before = set(sys.modules)
        try:
            for name in PRELOAD:
                importlib.import_module(name)
            _sources[:] = source_stamps(
                getattr(m, "__file__", None) for k, m in sys.modules.items() if k not in before
            )
        except Exception as exc:  # noqa: BLE001 (any failure: supervisord runs on, exec'ing)
            print(
                f"ops.supervisord: collectors will be exec'd: preload failed: {exc!r}",
                file=sys.stderr,
                flush=True,
            )
            return False
        # What is imported stays for good: frozen, the collector children's collections
        # never scan it (nor write to its pages, which stay shared with supervisord).
        gc.collect()
        gc.freeze()
        _preload_uids = (os.getuid(), os.geteuid())
        _preloaded = True
    return True


def source_stamps(paths: Iterable[str | None]) -> list[tuple[str, int, int]]:
    """(path, mtime in ns, size) of each existing file of ``paths`` (None skipped)."""
    out = []
    for path in paths:
        if path is not None:
            try:
                st = os.stat(path)
            except OSError:
                continue
            out.append((path, st.st_mtime_ns, st.st_size))
    return out


def changed_source(stamps: Iterable[tuple[str, int, int]]) -> str | None:
    """The first file of ``stamps`` that is not as stamped (changed, replaced or gone)."""
    for path, mtime_ns, size in stamps:
        try:
            st = os.stat(path)
        except OSError:
            return path
        if st.st_mtime_ns != mtime_ns or st.st_size != size:
            return path
    return None


def shadowed(cwd: str) -> bool:
    """Whether ``python -m collector`` run in ``cwd`` would import another ``collector``
    package than the one imported here (``-m`` puts the working directory first)."""
    here = os.path.dirname(os.path.realpath(str(sys.modules[COLLECTOR_MODULE].__file__)))
    there = os.path.join(cwd, COLLECTOR_MODULE)
    return os.path.isdir(there) and os.path.realpath(there) != here


def runs_in_place(filename: str, argv: Sequence[str], env: Mapping[str, str]) -> bool:
    """Whether a program supervisord is about to exec is a collector run that this process
    can start itself: ``python -m collector ...`` (not ``rebuild``) by this interpreter's own
    path, with no ``PYTHON*`` environment variable other than supervisord's."""
    python_env = {k for k in (*env, *os.environ) if k.startswith("PYTHON")}
    return (
        os.path.abspath(filename) == os.path.abspath(sys.executable)
        and list(argv[1:3]) == ["-m", COLLECTOR_MODULE]
        and list(argv[3:4]) != ["rebuild"]
        and all(env.get(k) == os.environ.get(k) for k in python_env)
    )


def run_collector(
    args: list[str], env: Mapping[str, str], received: Callable[[], int | None]
) -> NoReturn:
    """In a forked child of supervisord, in place of ``execve``: the collector with ``args``
    (its command line after ``-m collector``), as ``python -m collector`` would run it.
    ``received`` pops the signals supervisord's own handlers took in this child (since the
    fork): a stop among them stops the collector, as soon as it can."""
    code = 1
    try:
        from collector import __main__ as collector_main
        from collector import signals

        signals.install()  # first, as collector/__main__.py does
        for valid in signal.valid_signals():
            if valid not in signals.STOP_SIGNALS and callable(signal.getsignal(valid)):
                signal.signal(valid, signal.SIG_DFL)  # (supervisord's)
        signal.set_wakeup_fd(-1)  # (were one set, its descriptor is closed: the number is free)
        while (signum := received()) is not None:
            if signum in signals.STOP_SIGNALS:
                signal.raise_signal(signum)  # now the collector's
        gc.collect()  # supervisord's unreachable objects go now, before any file is ours
        gc.freeze()  # what is left stays alive, unscanned, for the collector's lifetime
        os.environ.clear()
        os.environ.update(env)
        _kept.extend((sys.stdin, sys.stdout, sys.stderr))
        encoding = sys.stdout.encoding
        sys.stdin = open(0, encoding=encoding, closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", encoding=encoding, closefd=False)  # noqa: SIM115
        sys.stderr = open(  # noqa: SIM115 (as Python's own: line-buffered, never failing)
            2,
            "w",
            buffering=1,
            encoding=encoding,
            errors="backslashreplace",
            closefd=False,
        )
        sys.argv = [str(collector_main.__file__), *args]
        try:
            with open("/proc/self/comm", "w") as comm:
                comm.write(COLLECTOR_MODULE)
        except OSError:
            pass  # (not Linux: ps shows supervisord's name)
        try:
            code = collector_main.main(args)
        except SystemExit as exc:  # argparse: --help (0), bad input (2)
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        collector_main.exit_now(code)
    except BaseException:  # noqa: BLE001 (reported; the child must never return to supervisord)
        traceback.print_exc()
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
    finally:
        os._exit(code)


def _exec_or_run(execve: Callable[..., None]) -> Callable[..., None]:
    """``execve`` (``ServerOptions.execve``, called in a forked child only) that runs a
    collector program in place (:func:`runs_in_place`) instead."""

    def execve_or_run(self: Any, filename: str, argv: list[str], env: dict[str, str]) -> None:
        try:
            in_place = (
                _preloaded
                and (os.getuid(), os.geteuid()) == _preload_uids  # (after the `user` setting)
                and runs_in_place(filename, argv, env)
                and not shadowed(os.getcwd())  # (supervisord changed to its directory)
                and changed_source(_sources) is None
            )
        except OSError:  # (e.g. its directory gone): the exec says what is wrong
            in_place = False
        if in_place:
            run_collector(list(argv[3:]), env, self.get_signal)
        execve(self, filename, argv, env)

    execve_or_run.__wrapped__ = execve  # type: ignore[attr-defined]
    return execve_or_run


def install() -> None:
    """Makes supervisord's children close their inherited descriptors in one call, and run
    collector programs in place (once each)."""
    for cls in CHILD_CLASSES:
        prepare = cls.__dict__["_prepare_child_fds"]
        if not hasattr(prepare, "__wrapped__"):
            cls._prepare_child_fds = _closing_at_once(prepare)
    execve = options.ServerOptions.__dict__["execve"]
    if not hasattr(execve, "__wrapped__"):
        options.ServerOptions.execve = _exec_or_run(execve)


def main(argv: list[str] | None = None) -> None:
    install()
    preload()
    supervisord.main(args=sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
