"""The package imports in one direction: no circle, and no layer reaching up.

Every import counts, the deferred ones inside functions too: the runtime <-> streaming_job
circle was hidden by one. The layers, from the bottom:

* ``errors``: imports nothing of cdcpipe's;
* ``pipeline/``: the executors' code, shipped to Spark workers: ``errors`` and itself only;
* then, each importing only from the layers before it (:data:`LAYERS`): the clients of the
  services' APIs, which know nothing of the local runtime; the local runtime (settings,
  processes, secrets, the services and what runs beside them); the flows built on it (demo,
  resync, verify, the operations checker); the benchmarks;
* ``commands/``, ``console/`` and ``cli``: the top. Nothing below imports them, and the
  console and the commands do not import each other or ``cli``.

A new module must be given its layer here.

``make check`` runs this (no service needed).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "cdcpipe"
TOP = ("cdcpipe.commands", "cdcpipe.console", "cdcpipe.cli", "cdcpipe.__main__")
#: Imports across the top that are the point of their module: (importer, imported) -> why.
ENTRY_POINTS = {
    ("cdcpipe.__main__", "cdcpipe.cli"): "python -m cdcpipe runs the CLI",
    ("cdcpipe.commands.console", "cdcpipe.console"): "'cdcpipe console' serves the console",
}


#: The layers from the bottom: (name, module prefixes). A module may import its own layer and
#: those before it, never one after it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("cdcpipe", "cdcpipe.errors", "cdcpipe.settings", "cdcpipe.jsonfile")),
    ("pipeline", ("cdcpipe.pipeline",)),
    ("clients", ("cdcpipe.clients",)),
    ("runtime", ("cdcpipe.runtime",)),
    ("flows", ("cdcpipe.demo", "cdcpipe.resync", "cdcpipe.verify", "cdcpipe.opcheck")),
    ("bench", ("cdcpipe.bench",)),
    ("top", TOP),
]


def layer_of(module: str) -> int | None:
    """The index in :data:`LAYERS` of the longest prefix naming ``module``."""
    best: tuple[int, int] | None = None
    for index, (_name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    return best[0] if best else None


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The cdcpipe modules ``name`` imports (a name imported from a package counts as its
    module when it is one, else as the package)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("cdcpipe")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            elif node.module and node.module.startswith("cdcpipe"):
                base = node.module
            else:
                continue
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def test_no_module_imports_itself_through_others():
    g = graph()
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(g[node]):
            if state.get(nxt) == 1:
                circles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for start in sorted(g):
        if start not in state:
            visit(start, [start])
    assert circles == [], "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    """``module`` is one of ``prefixes`` or inside one (``cdcpipe.clients`` is not under ``cdcpipe.cli``)."""
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_each_layer_imports_only_below_it():
    wrong = []
    for name, targets in graph().items():
        for target in targets:
            if name == "cdcpipe.errors":
                wrong.append((name, target))
            elif name.startswith("cdcpipe.pipeline") and not (target == "cdcpipe.errors" or target.startswith("cdcpipe.pipeline")):
                wrong.append((name, target))
            elif _under(target, TOP) and not _under(name, TOP):
                wrong.append((name, target))
            elif _under(name, TOP) and _under(target, TOP) and name.split(".")[:2] != target.split(".")[:2]:
                if (name, target) not in ENTRY_POINTS and not (name == "cdcpipe.cli" and target.startswith("cdcpipe.commands")):
                    wrong.append((name, target))  # (cli builds the commands' parsers)
    assert wrong == [], "imports against the layers: " + ", ".join(f"{a} -> {b}" for a, b in sorted(wrong))


def test_the_middle_layers_import_only_downwards():
    g = graph()
    unplaced = sorted(m for m in g if layer_of(m) is None)
    assert unplaced == [], f"modules with no layer (add them to LAYERS): {unplaced}"
    upward = [
        f"{a} ({LAYERS[layer_of(a)][0]}) -> {b} ({LAYERS[layer_of(b)][0]})"
        for a, targets in g.items()
        for b in targets
        if layer_of(b) > layer_of(a)
    ]
    assert upward == [], "imports reaching up a layer: " + ", ".join(sorted(upward))


def test_the_checker_sees_imports():
    """The graph is not empty by mistake: known edges are found."""
    g = graph()
    assert "cdcpipe.errors" in g["cdcpipe.pipeline.changes"]
    assert "cdcpipe.runtime.services" in g["cdcpipe.runtime.streaming_job"]
    assert "cdcpipe.runtime.streaming_job" in g["cdcpipe.runtime"]
