"""Errors that say what went wrong, where, and what to do about it.

Every error a user can cause carries an exit code (2 for bad input or graph,
1 for a run that failed) and renders as one readable paragraph; the CLI prints
``str(error)`` and never a traceback unless ``--debug``.
"""

from __future__ import annotations

from dataclasses import dataclass


class VDNodesError(Exception):
    """Base of all vdnodes errors. ``exit_code`` is what the CLI returns."""

    exit_code = 1


class UserInputError(VDNodesError):
    """Bad input from the user: a file, a value, a command-line option."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a graph, tied to the node (or graph part) it concerns."""

    where: str  # node id, or "graph" / "graph.inputs" / "file"
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = self.where if self.where.startswith(("graph", "file")) else f"node '{self.where}'"
        text = f"{where}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class GraphError(UserInputError):
    """A graph that cannot run; lists every problem found, each naming its node."""

    def __init__(self, problems: list[Problem], source: str = "graph") -> None:
        self.problems = list(problems)
        self.source = source
        n = len(self.problems)
        head = f"{source} is not valid ({n} problem{'s' if n != 1 else ''}):"
        super().__init__("\n".join([head] + [f"  - {p}" for p in self.problems]))


class NodeError(VDNodesError):
    """A node failed while running.

    Names the node and, where it applies, the socket, the expected and the
    received type or shape, and a hint. ``user_fault`` marks errors caused by the
    user's input (a missing file, an empty prompt): those exit with code 2.
    """

    def __init__(
        self,
        node_id: str,
        message: str,
        *,
        node_type: str = "",
        socket: str = "",
        expected: str = "",
        got: str = "",
        hint: str = "",
        user_fault: bool = False,
    ) -> None:
        self.node_id = node_id
        self.node_type = node_type
        self.socket = socket
        self.expected = expected
        self.got = got
        self.hint = hint
        self.message = message
        self.user_fault = user_fault
        self.exit_code = 2 if user_fault else 1
        where = f"node '{node_id}'" + (f" ({node_type})" if node_type else "")
        if socket:
            where += f", socket '{socket}'"
        text = f"{where}: {message}"
        if expected or got:
            text += f" [expected {expected or '?'}, got {got or '?'}]"
        if hint:
            text += f". Hint: {hint}"
        super().__init__(text)


class NodeInputError(UserInputError):
    """Raised by a node body for a user mistake (missing file, empty prompt).

    The executor wraps it in a ``NodeError`` with ``user_fault=True`` so the
    message names the node and the CLI exits with code 2.
    """

    def __init__(self, message: str, *, socket: str = "", hint: str = "") -> None:
        self.socket = socket
        self.hint = hint
        super().__init__(message)


class RunCancelled(VDNodesError):
    """The run's cancel token was triggered; raised between nodes or inside one."""

    exit_code = 1

    def __init__(self, node_id: str = "") -> None:
        self.node_id = node_id
        super().__init__(f"run cancelled{f' during node {node_id!r}' if node_id else ''}")
