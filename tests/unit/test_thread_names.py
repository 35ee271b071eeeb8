"""dagq's Thread subclasses keep threading.Thread's own `_stop` method: Python calls it on
every thread after a fork, and an Event in its place made each fork print a traceback."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from dagq.workers.completions import CompletionBatcher
from dagq.workers.listener import QueueListener
from dagq.workers.streams import StreamWriter
from dagq.workers.supervisor import Supervisor


def test_no_thread_subclass_shadows_thread_stop() -> None:
    for cls in (CompletionBatcher, QueueListener, StreamWriter, Supervisor):
        assert cls._stop is threading.Thread._stop, cls
        source = Path(sys.modules[cls.__module__].__file__ or "")
        assert "self._stop =" not in source.read_text(), cls
