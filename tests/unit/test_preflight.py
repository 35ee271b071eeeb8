"""One `dagq up` per data directory, and a taken API port, found before anything starts
(issue 27, point 5)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dagq.runtime.preflight import AlreadyRunning, PortInUse, ensure_port_free, one_up_per_data_dir


def test_a_second_holder_of_a_data_directory_is_told_the_first_ones_pid(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with one_up_per_data_dir(data):
        with pytest.raises(AlreadyRunning) as raised, one_up_per_data_dir(data):
            pass
        assert f"another `dagq up` (pid {os.getpid()}) is running on the data directory " \
               f"{data.resolve()}" in raised.value.message
        # Another process is refused too (the lock is the kernel's, not this process's).
        other = subprocess.run(
            [sys.executable, "-c", "from pathlib import Path; from dagq.runtime.preflight import "
             f"one_up_per_data_dir as lock\nwith lock(Path({str(data)!r})): pass"],
            capture_output=True, text=True, timeout=60)
        assert other.returncode == 1 and f"(pid {os.getpid()})" in other.stderr
    with one_up_per_data_dir(data):  # released on exit: the next start is free
        pass


def test_the_lock_goes_with_a_killed_holder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from "
         "dagq.runtime.preflight import one_up_per_data_dir as lock\n"
         f"with lock(Path({str(data)!r})):\n print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(AlreadyRunning, match=f"pid {holder.pid}"), \
                one_up_per_data_dir(data):
            pass
    finally:
        holder.kill()
        holder.wait()
    with one_up_per_data_dir(data):  # a SIGKILLed holder left its file, not its lock
        pass


@pytest.mark.parametrize("reuse_port", [False, True])
def test_a_port_someone_listens_on_is_refused(reuse_port: bool) -> None:
    with socket.socket() as listener:
        if reuse_port:  # as `dagq api --processes N` listens
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(PortInUse) as raised:
            ensure_port_free("127.0.0.1", port)
        assert raised.value.message == (
            f"port {port} on 127.0.0.1 is already in use (another `dagq up` or `dagq api`?); "
            "choose another with --port or DAGQ_API_PORT")
    ensure_port_free("127.0.0.1", port)  # closed: free again
