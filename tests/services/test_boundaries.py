"""The engine's parts keep to their own state: no module of app/services touches another object's privates.

DESIGN.md: each part takes the collaborators it uses in its constructor and talks to
them through what they offer, so ``app/services/client.py`` stays the true map of who
calls whom. Reaching into ``other._state`` (or importing ``_helper`` from another
module) is a dependency that map does not show; this test reads every module with
``ast`` and names each one.
"""

from __future__ import annotations

import ast
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / "app" / "services"
OWN = frozenset({"self", "cls"})


def _private(name: str) -> bool:
    """A leading underscore, but not a dunder (``__class__``, ``__init__`` are everyone's)."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _made_here(method: ast.FunctionDef | ast.AsyncFunctionDef, class_name: str) -> set[str]:
    """Names a method binds to a new instance of its own class (``made = cls(...)`` in a factory).

    Python's privacy is the class's, not the instance's: ``Enclave.open`` setting up the
    ``Enclave`` it has just made touches its own kind of state, not a collaborator's.
    """
    names: set[str] = set()
    for node in ast.walk(method):
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign):
            targets, value = [node.target], node.value
        else:
            continue
        if (
            isinstance(value, ast.Call)
            and isinstance(value.func, ast.Name)
            and value.func.id in {"cls", class_name}
        ):
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def reaches_into_privates(source: str, filename: str) -> list[str]:
    """Every ``x._name`` where ``x`` is not the object's own, and every private name imported.

    Its own: ``self``, ``cls``, and in a method an instance of its class it has just made.
    """
    tree = ast.parse(source, filename)
    own: dict[int, frozenset[str]] = {}
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        for method in cls.body:
            if isinstance(method, ast.FunctionDef | ast.AsyncFunctionDef):
                allowed = OWN | _made_here(method, cls.name)
                own.update((id(node), allowed) for node in ast.walk(method))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in own.get(id(node), OWN)):
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.ImportFrom):
            found += [
                (node.lineno, f"from {'.' * node.level}{node.module or ''} import {alias.name}")
                for alias in node.names
                if _private(alias.name)
            ]
    return [f"{filename}:{line}: {what}" for line, what in sorted(found)]


def test_no_service_module_reaches_into_another_objects_private_state() -> None:
    """Test that no module of app/services touches another object's _names or imports a _name."""
    modules = sorted(SERVICES.glob("*.py"))
    assert len(modules) > 10, f"expected the engine's modules in {SERVICES}"
    found = [v for path in modules for v in reaches_into_privates(path.read_text("utf-8"), path.name)]
    assert found == []


def test_the_check_names_each_kind_of_reach_and_allows_an_objects_own() -> None:
    """Test that the checker flags another object's privates and private imports, and nothing else."""
    source = "\n".join(
        [
            "from app.services.sessions import _secret, public",  # 1: a private import
            "from ._local import _hidden",  # 2: a private name, relatively
            "class Part:",
            "    def run(self, other):",
            "        self._mine = cls._ours = 1",  # 5: its own state: fine
            "        other._state.clear()",  # 6: another object's state
            "        self._store._db.execute('')",  # 7: a collaborator's state, through self
            "        type(other).__name__, other.__dict__, other.public",  # 8: dunders and public: fine
            "        super()._hook()",  # 9: not self: flagged
            "    @classmethod",
            "    def make(cls):",
            "        made = cls()",
            "        made._ready = True",  # 13: an instance of its own class it made: fine
            "        helper = Helper()",
            "        helper._ready = True",  # 15: another class's object
            "        async def later():",
            "            made._ready = False",  # 17: still its own, inside a closure
            "        return made",
            "def free(part):",
            "    made = Part()",
            "    return made._mine",  # 21: outside the class, no one's own
        ]
    )
    assert reaches_into_privates(source, "part.py") == [
        "part.py:1: from app.services.sessions import _secret",
        "part.py:2: from ._local import _hidden",
        "part.py:6: other._state",
        "part.py:7: self._store._db",
        "part.py:9: super()._hook",
        "part.py:15: helper._ready",
        "part.py:21: made._mine",
    ]
