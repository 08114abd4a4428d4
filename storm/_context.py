"""TopologyContext: what a task may know about the topology and its place in it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._topology import TopologySpec


class TopologyContext:
    """This task's id and component, every component's task ids, this worker's tasks."""

    def __init__(self, spec: TopologySpec, task_id: int, worker_tasks: set[int] | frozenset[int],
                 worker_index: int = 0) -> None:
        self._spec = spec
        self.task_id = task_id
        self.component_id = spec.task_component[task_id]
        self.worker_tasks = sorted(worker_tasks)
        self.worker_index = worker_index
        self.topology_name = spec.name

    # Storm-style names
    @property
    def this_task_id(self) -> int:
        return self.task_id

    @property
    def this_component_id(self) -> str:
        return self.component_id

    @property
    def this_task_index(self) -> int:
        """Index of this task among its component's tasks (0-based)."""
        return self._spec.components[self.component_id].tasks.index(self.task_id)

    @property
    def component_tasks(self) -> dict[str, list[int]]:
        return {name: list(c.tasks) for name, c in self._spec.components.items()}

    @property
    def task_to_component(self) -> dict[int, str]:
        return dict(self._spec.task_component)

    def get_component_tasks(self, component: str) -> list[int]:
        return list(self._spec.components[component].tasks)

    def get_component_output_fields(self, component: str, stream: str = "default") -> tuple[str, ...]:
        return tuple(self._spec.components[component].outputs[stream].fields)

    def get_this_sources(self) -> dict[tuple[str, str], Any]:
        """{(component, stream): grouping} this task's component subscribes to."""
        comp = self._spec.components[self.component_id]
        return {(s.source, s.stream): s.grouping for s in comp.inputs}

    def __repr__(self) -> str:
        return f"TopologyContext(task={self.task_id}, component={self.component_id!r})"
