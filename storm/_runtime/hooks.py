"""Task hooks: how code outside the core observes (and, for the test harness,
paces) a task, without touching its methods. Tracing, the in-process test
harness and users' fault injection are hooks.

A hook is bound once, when the worker builds a task (`Worker(..., hooks=...)`
gives a factory asked once per task). A task with no hook runs the plain path
and pays nothing; a task with hooks runs the hooked path, where every emit
takes the checked route and each event below is reported, in this order:

- ``emitted`` after an emit was delivered (all targets), with the anchors of a
  bolt's emit (a BasicBolt's implicit anchor included) or a spout's msg id;
- ``edge`` for each tuple of a tuple tree delivered by a bolt, and
  ``tree_started`` when a spout starts a tree (after its tuples are delivered);
- ``admit`` before a bolt executes a tuple (not ticks): False means the hook
  took the tuple (dropped, held back or failed it) and it is not executed;
- ``before_execute`` / ``after_execute`` around a bolt's execute (not ticks);
- ``acked`` / ``failed`` when a bolt acks or fails an input;
- ``spout_acked`` / ``spout_failed`` right before the spout's ack / fail
  callback, and ``tree_done`` when a spout learns how a tree ended;
- ``next_tuple_allowed`` before each next_tuple call (False skips the call).

Hooks must not raise; what they record is theirs. This module imports nothing
of the runtime, so the layers above can implement it freely."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["HookChain", "HookFactory", "TaskHooks"]


class TaskHooks:
    """Override what you need; every method's default does nothing. `task` is
    the executor (component, task_id, ... are public on it)."""

    def emitted(self, task: Any, stream: str, values: Sequence[Any], targets: Sequence[int],
                third: Any, direct_task: int | None) -> None:
        """An emit was delivered; `third` is a bolt's anchors (a tuple) or a spout's msg id."""

    def edge(self, task: Any, stream: str, values: Sequence[Any], target: int, roots: Any,
             anchors: Sequence[Any]) -> None:
        """A bolt's tuple in a tree went to `target` with `roots`, anchored to `anchors`."""

    def tree_started(self, task: Any, root: int, stream: str, values: Sequence[Any], msg_id: Any,
                     edges: Sequence[tuple[int, int]]) -> None:
        """A spout started tree `root`; `edges` are (target task, edge id)."""

    def new_root(self, task: Any) -> int | None:
        """A root id for a new tree (None: the runtime draws one)."""
        return None

    def admit(self, task: Any, tup: Any) -> bool:
        """Whether the bolt task executes `tup` now; False: the hook took it (it
        may ack, fail or re-queue it through the task's public collector/inbox)."""
        return True

    def before_execute(self, task: Any, tup: Any) -> Any:
        """Returns a token passed to after_execute."""
        return None

    def after_execute(self, task: Any, tup: Any, token: Any, error: BaseException | None) -> None:
        pass

    def acked(self, task: Any, tup: Any) -> None:
        pass

    def failed(self, task: Any, tup: Any) -> None:
        pass

    def spout_acked(self, task: Any, msg_id: Any) -> None:
        pass

    def spout_failed(self, task: Any, msg_id: Any) -> None:
        pass

    def tree_done(self, task: Any, root: int, ok: bool, why: str) -> None:
        """`why`: acked, failed or timed out."""

    def next_tuple_allowed(self, task: Any) -> bool:
        return True


class HookChain(TaskHooks):
    """Several hooks of one task, called in order."""

    def __init__(self, hooks: Sequence[TaskHooks]) -> None:
        self.hooks = list(hooks)

    def emitted(self, task: Any, stream: str, values: Sequence[Any], targets: Sequence[int],
                third: Any, direct_task: int | None) -> None:
        for h in self.hooks:
            h.emitted(task, stream, values, targets, third, direct_task)

    def edge(self, task: Any, stream: str, values: Sequence[Any], target: int, roots: Any,
             anchors: Sequence[Any]) -> None:
        for h in self.hooks:
            h.edge(task, stream, values, target, roots, anchors)

    def tree_started(self, task: Any, root: int, stream: str, values: Sequence[Any], msg_id: Any,
                     edges: Sequence[tuple[int, int]]) -> None:
        for h in self.hooks:
            h.tree_started(task, root, stream, values, msg_id, edges)

    def new_root(self, task: Any) -> int | None:
        for h in self.hooks:
            root = h.new_root(task)
            if root is not None:
                return root
        return None

    def admit(self, task: Any, tup: Any) -> bool:
        # The first hook that takes the tuple has it: the later ones never see it.
        return all(h.admit(task, tup) for h in self.hooks)

    def before_execute(self, task: Any, tup: Any) -> Any:
        return [h.before_execute(task, tup) for h in self.hooks]

    def after_execute(self, task: Any, tup: Any, token: Any, error: BaseException | None) -> None:
        for h, t in zip(self.hooks, token, strict=True):
            h.after_execute(task, tup, t, error)

    def acked(self, task: Any, tup: Any) -> None:
        for h in self.hooks:
            h.acked(task, tup)

    def failed(self, task: Any, tup: Any) -> None:
        for h in self.hooks:
            h.failed(task, tup)

    def spout_acked(self, task: Any, msg_id: Any) -> None:
        for h in self.hooks:
            h.spout_acked(task, msg_id)

    def spout_failed(self, task: Any, msg_id: Any) -> None:
        for h in self.hooks:
            h.spout_failed(task, msg_id)

    def tree_done(self, task: Any, root: int, ok: bool, why: str) -> None:
        for h in self.hooks:
            h.tree_done(task, root, ok, why)

    def next_tuple_allowed(self, task: Any) -> bool:
        return all(h.next_tuple_allowed(task) for h in self.hooks)


#: Asked once per task when a worker builds it: the task's hooks, or None.
HookFactory = Callable[[Any], "TaskHooks | None"]
