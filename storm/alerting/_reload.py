"""Hot reload of a rules file: each alerting task looks at the file at every
tick (a stat, nothing more while it is unchanged) and, when its content
changed, checks the new content as `storm alerts check` does. A valid file is
handed to the task; an invalid one is rejected once per content (the task keeps
its rules and reports every error). The last file a task applied is kept in the
rules file's state directory, so a task that starts (or restarts) while the
file holds a bad edit runs the last good rules instead of dying.

The state directory, ``.<rules file name>.d/`` beside the rules file, also
holds what `storm alerts list` reads: each evaluator's firing and resolved
keys (``status-<topology>-<task>.json``)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._rules import RuleError, RuleSet, check_rules_file, check_rules_text

LAST_GOOD = "last-good.yaml"


def state_dir(rules_path: str | Path) -> Path:
    """``.<name>.d/`` beside the rules file: last good rules, evaluators' status."""
    p = Path(rules_path)
    return p.with_name(f".{p.name}.d")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` so readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class FileWatch:
    """Notices that a file may have changed: its (inode, size, mtime) differ
    from the last look. Editors that write a new file and rename it change the
    inode; ones that write in place change size or mtime."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sig = self._sig()

    def _sig(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def changed(self, settle: float = 0.0) -> bool:
        """Whether the file changed since the last True; a change younger than
        ``settle`` seconds is not reported yet (a writer may be halfway)."""
        sig = self._sig()
        if sig == self.sig:
            return False
        # (A modification time ahead of this clock, another host's, counts as settled.)
        if settle and sig is not None and 0 <= time.time() - sig[2] / 1e9 < settle:
            return False
        self.sig = sig
        return True


@dataclass
class Reload:
    """What a look at the rules file found: new rules to apply, or the errors
    of a rejected edit (``rules`` None). Nothing changed: no Reload at all."""

    rules: RuleSet | None
    errors: list[str]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def load_for_task(path: str | Path) -> tuple[RuleSet, list[str]]:
    """The rules a starting task runs: the file's, else (a bad edit is in the
    file) the last good rules a task applied, with the file's errors. No good
    rules at all: RuleError with every error."""
    p = Path(path)
    rules, errors = check_rules_file(p)
    if rules is not None:
        _save_last_good(p)
        return rules, []
    try:
        text = (state_dir(p) / LAST_GOOD).read_text()
    except OSError:
        text = None
    if text is not None:
        good, _ = check_rules_text(text, str(p))
        if good is not None:
            return good, errors
    raise RuleError("; ".join(errors))


def running_rules(path: str | Path) -> tuple[RuleSet | None, list[str]]:
    """The rules a running topology runs, as far as the files tell: the file's,
    else (it holds a bad edit) the last good ones, with the file's errors."""
    p = Path(path)
    rules, errors = check_rules_file(p)
    if rules is not None:
        return rules, []
    try:
        good, _ = check_rules_text((state_dir(p) / LAST_GOOD).read_text(), str(p))
    except OSError:
        good = None
    return good, errors


def _save_last_good(path: Path) -> None:
    try:
        text = path.read_text()
        target = state_dir(path) / LAST_GOOD
        try:
            if target.read_text() == text:
                return
        except OSError:
            pass
        write_atomic(target, text)
    except OSError:
        pass  # a read-only directory: no fallback, the rules still apply


class RulesWatcher:
    """One task's view of its rules file. ``poll()`` is called at every tick.
    An edit is read once the file has not changed for ``settle`` seconds, so
    a file written in several steps is not read (and rejected) halfway."""

    def __init__(self, path: str | Path, current: RuleSet, settle: float = 0.2) -> None:
        self.path = Path(path)
        self.settle = settle
        self.current = current
        self._watch = FileWatch(self.path)
        self._seen = self._read_digest()
        self.reloads = 0
        self.rejected = 0

    def _read_digest(self) -> str | None:
        try:
            return _digest(self.path.read_text())
        except OSError:
            return None

    def poll(self, force: bool = False) -> Reload | None:
        """A Reload when the file's content changed since the last look (or
        ``force``: look now, e.g. an observation named a rule this task does
        not know yet); None when there is nothing new."""
        if not self._watch.changed(self.settle) and not force:
            return None
        digest = self._read_digest()
        if digest is None:
            if self._seen is None:
                return None
            self._seen = None
            self.rejected += 1
            return Reload(None, [f"cannot read rules file '{self.path}'; keeping the rules running"])
        if digest == self._seen:
            return None
        self._seen = digest
        rules, errors = check_rules_file(self.path)
        if rules is None:
            self.rejected += 1
            return Reload(None, errors)
        _save_last_good(self.path)
        if rules == self.current:
            return None  # comments or layout only
        self.current = rules
        self.reloads += 1
        return Reload(rules, [])


def write_status(rules_path: str | Path, topology: str, task: int, doc: dict[str, Any]) -> None:
    """An evaluator's status (firing and resolved keys per rule) for `storm alerts list`."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in topology)
    try:
        write_atomic(state_dir(rules_path) / f"status-{safe}-{task}.json", json.dumps(doc, sort_keys=True))
    except OSError:
        pass  # list shows nothing for this task; the alerts still go out


def read_status(rules_path: str | Path, topology: str) -> list[dict[str, Any]]:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in topology)
    out = []
    for p in sorted(state_dir(rules_path).glob(f"status-{safe}-*.json")):
        try:
            doc = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("topology") == topology:
            out.append(doc)
    return out


def remove_status(rules_path: str | Path, topology: str, task: int) -> None:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in topology)
    try:
        (state_dir(rules_path) / f"status-{safe}-{task}.json").unlink()
    except OSError:
        pass
