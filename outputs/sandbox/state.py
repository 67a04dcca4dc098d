"""The sandbox's partner data kept in a JSON file, so that a sandbox run for people keeps it across restarts.

A real partner keeps what it was sent: after `make demo` then `make serve`, Mailchimp still holds the 45 the demo
forwarded. Requests only flag a change; a background saver writes at most once a second, and once more on stop,
so a request costs nothing more than setting that flag. A write goes to a temporary file in the same directory
and replaces the old file in one step (os.replace), so a crash mid-write leaves the previous state whole.

The tests' sandboxes have no state file: they stay in memory, and fast.
"""

import json
import os
import sys
import tempfile
import threading
from pathlib import Path

FORMAT = 1  # the shape of the file; a file of another shape is not read
SAVE_EVERY = 1.0  # seconds between writes at most


class UnreadableState(Exception):
    """The file holds no state this sandbox can load; the message says why, in a few words."""


class StateFile:
    def __init__(self, path, sandbox):
        self.path = Path(path)
        self.sandbox = sandbox
        self.changed = False  # set by every request; the saver clears it before it writes
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._failed = False
        self.note = None  # what load() found, one sentence for the command to print
        self.unreadable = False  # the file was there but not loaded: the note is a warning

    # --- load ----------------------------------------------------------------------------------------------
    def load(self):
        """Fill the sandbox from the file; ``note`` then says what happened (None without a file)."""
        self.unreadable = False
        self.note = self._load()

    def _load(self):
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            return self._start_empty(f"it cannot be read: {getattr(exc, 'strerror', None) or exc}")
        try:
            saved = json.loads(text)
        except ValueError:
            return self._start_empty("it is not valid JSON")
        try:
            if not isinstance(saved, dict) or saved.get("format") != FORMAT:
                found = saved.get("format") if isinstance(saved, dict) else None
                raise UnreadableState(f"it is in format {found}, and this sandbox reads format {FORMAT}")
            self.sandbox.load_state(saved)
        except UnreadableState as exc:
            return self._start_empty(str(exc))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return self._start_empty(f"its data has another shape: {exc.__class__.__name__} {exc}")
        return f"Partner data restored from {self.path} (saved {saved.get('saved_at', 'at an unknown time')})."

    def _start_empty(self, why):
        self.sandbox.clear()
        self.unreadable = True
        return f"Warning: the saved sandbox state {self.path} was not loaded ({why}); the sandbox starts empty."

    # --- save ----------------------------------------------------------------------------------------------
    def start(self):
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="partner-sandbox-saver", daemon=True)
        self._thread.start()

    def stop(self):
        """Stop the saver and write what changed since its last write."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.save_if_changed()

    def _run(self):
        while not self._stop.wait(SAVE_EVERY):
            self.save_if_changed()

    def save_if_changed(self):
        if self.changed:
            self.save()

    def save(self):
        # Cleared before the state is read: a change made while it is written flags the next write.
        self.changed = False
        with self._write_lock:
            try:
                self._write(self.sandbox.dump_state())
            except (OSError, TypeError, ValueError) as exc:  # a full disk, a value JSON cannot hold: keep serving
                self.changed = True
                if not self._failed:  # one sentence, not one a second
                    self._failed = True
                    why = getattr(exc, "strerror", None) or exc
                    sys.stderr.write(f"Warning: the sandbox state cannot be saved to {self.path}: {why}.\n")
                return
            self._failed = False

    def _write(self, state):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(state, out, ensure_ascii=False, separators=(",", ":"))
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise
