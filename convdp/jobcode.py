"""Which of convdp's own code a rule's job runs, as one digest: the rules' ``code`` param, so
that an edit of that code reruns the jobs it feeds, and only those.

Snakemake's own ``code`` trigger sees a rule's script, which is a few lines calling the
package; without this, results made before a fix of the package stayed on disk as if made
after it. The code a script runs is found without importing anything, from the source:

- the top-level functions and classes the script imports from a convdp module (``from
  convdp.pipeline import extract``), the module's other top-level definitions they name, and
  that module's statements outside any definition (its imports and constants);
- every convdp module those import (inside a function or at module level), and from there
  on every module a module imports anywhere in its file, with the packages' ``__init__``.

This is a superset of what runs (an import in a branch a job never takes counts too), so an
edit can rerun a job it would not have changed, never leave one stale. Sources are compared
as parsed, without comments, blank lines or docstrings: an edit of those reruns nothing (as
parsed by this Python: another Python version parses otherwise, and reruns everything once).
Not seen: a module or function reached by a name built at run time (``importlib``,
``globals()``, ``getattr`` on a module; a net of your own, ``module:factory``, has its own
digest, :func:`convdp.provenance.code_digest`), and files other than Python sources; no job
function of convdp does either. The digest is of the package beside the workflow, which
Snakemake reads; a job refuses to run where the convdp it imports differs
(:func:`convdp.pipeline.check_job_code`).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import re
from pathlib import Path

PACKAGE = "convdp"


def _is_docstring(statement: ast.stmt) -> bool:
    return (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
            and isinstance(statement.value.value, str))


def _tree(path: Path) -> ast.Module:
    """``path`` parsed, without its statements that are a bare string (docstrings): they do
    nothing when run. A source is parsed once per process (the same bytes, the same tree)."""
    return _parsed(path.read_bytes(), str(path))


@functools.cache
def _parsed(source: bytes, name: str) -> ast.Module:
    tree = ast.parse(source, name)
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if isinstance(body, list) and any(map(_is_docstring, body)):
                setattr(node, field, [s for s in body if not _is_docstring(s)] or [ast.Pass()])
    return tree


def _dump(node: ast.AST) -> str:
    return ast.dump(node, include_attributes=False)


def _file_digest(path: Path) -> str:
    """sha256 of a source as parsed."""
    return _digest_of(path.read_bytes(), str(path))


@functools.cache
def _digest_of(source: bytes, name: str) -> str:
    return hashlib.sha256(_dump(_parsed(source, name)).encode()).hexdigest()


class _Package:
    """The modules of the package ``name`` under the folder ``root`` (the one holding it;
    None: this package's)."""

    def __init__(self, root: str | Path | None, name: str = PACKAGE):
        self.root = Path(root) if root else Path(__file__).resolve().parent.parent
        self.name = name

    def file(self, module: str) -> Path | None:
        """The source of ``module`` (dotted), None where it is not one of the package's."""
        if module.split(".")[0] != self.name:
            return None
        base = self.root.joinpath(*module.split("."))
        for candidate in (base / "__init__.py", base.with_suffix(".py")):
            if candidate.is_file():
                return candidate
        return None

    def imported(self, node: ast.AST, module: str | None) -> set[str]:
        """The package's modules that the imports anywhere under ``node`` name (``module``:
        the importing module, for relative imports; None for a script), with every package
        above them (an import runs their ``__init__`` first)."""
        path = self.file(module) if module else None
        here = (module if path is not None and path.name == "__init__.py"
                else (module or "").rpartition(".")[0])
        named = set()
        for n in ast.walk(node):
            if isinstance(n, ast.Import):
                named.update(a.name for a in n.names)
            elif isinstance(n, ast.ImportFrom):
                base = n.module or ""
                if n.level:
                    parts = here.split(".")[: len(here.split(".")) - n.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                named.add(base)
                named.update(f"{base}.{a.name}" for a in n.names)  # `from pkg import module`
        out = set()
        for name in named:
            parts = name.split(".")
            out.update(m for i in range(1, len(parts) + 1)
                       if self.file(m := ".".join(parts[:i])) is not None)
        return out

    def _imports_of(self, module: str) -> set[str]:
        path = self.file(module)
        return _module_imports(self.root, self.name, module, path.read_bytes(), str(path))

    def parents(self, module: str) -> set[str]:
        """The packages above ``module`` (an import of it runs their ``__init__`` first)."""
        parts = module.split(".")
        return {".".join(parts[:i]) for i in range(1, len(parts))}

    def closure(self, modules: set[str]) -> set[str]:
        """``modules`` and every module of the package they import, transitively."""
        seen: set[str] = set()
        todo = list(modules)
        while todo:
            module = todo.pop()
            if module not in seen:
                seen.add(module)
                todo.extend(self._imports_of(module) | self.parents(module))
        return seen

    def definitions(self, module: str, names: set[str]) -> tuple[list[str], set[str]]:
        """What running ``names`` (top-level definitions of ``module``) can run of that
        module: the dumps of its statements outside any definition and of the definitions
        ``names`` reach by name, and the modules all of these import. A name that is not a
        top-level function or class (a re-export, a constant) stands for the whole module."""
        tree = _tree(self.file(module))
        defs = {s.name: s for s in tree.body
                if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}
        if not names <= defs.keys():
            return [], {module}
        outside = [s for s in tree.body if s not in defs.values()]
        dumps = [_dump(s) for s in outside]
        modules = self.parents(module).union(*(self.imported(s, module) for s in outside))
        modules.discard(module)
        seen: set[str] = set()
        # what the statements outside the definitions call runs when the module is imported
        todo = sorted(names) + [n.id for s in outside for n in ast.walk(s)
                                if isinstance(n, ast.Name) and n.id in defs]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            dumps.append(f"{name}\n{_dump(defs[name])}")
            modules |= self.imported(defs[name], module)
            todo.extend(n.id for n in ast.walk(defs[name])
                        if isinstance(n, ast.Name) and n.id in defs and n.id not in seen)
        return dumps, modules


@functools.cache
def _module_imports(root: Path, name: str, module: str, source: bytes, path: str) -> set[str]:
    """The package's modules that ``module``'s ``source`` imports anywhere in it."""
    return _Package(root, name).imported(_parsed(source, path), module)


def script_modules(script: str | Path, root: str | Path | None = None,
                   package: str = PACKAGE) -> tuple[dict[str, list[str]], set[str]]:
    """The code a rule's ``script`` can run: ``({module: [dumps]}, modules)``, the parts of
    the modules it imports names from, and the whole modules under them (see the module's
    docstring). ``root``: the folder holding the package (default: this package's)."""
    pkg = _Package(root, package)
    tree = _tree(Path(script).resolve())
    parts: dict[str, list[str]] = {}
    whole: set[str] = set()
    from_names: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and pkg.file(node.module or ""):
            submodules = {f"{node.module}.{a.name}" for a in node.names
                          if pkg.file(f"{node.module}.{a.name}")}
            whole |= submodules
            names = {a.name for a in node.names} - {m.rpartition(".")[2] for m in submodules}
            if names:
                from_names.setdefault(node.module, set()).update(names)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            whole |= pkg.imported(node, None)
    for module, names in sorted(from_names.items()):
        dumps, modules = pkg.definitions(module, names)
        if dumps:
            parts[module] = dumps
        whole |= modules
    whole = pkg.closure(whole)
    return {m: d for m, d in parts.items() if m not in whole}, whole


def script_digest(script: str | Path, root: str | Path | None = None,
                  package: str = PACKAGE) -> str:
    """sha256 of a rule's ``script`` and of the package's code it can run
    (:func:`script_modules`), each source as parsed (comments, layout and docstrings left out)."""
    parts, whole = script_modules(script, root, package)
    pkg = _Package(root, package)
    h = hashlib.sha256(_dump(_tree(Path(script).resolve())).encode())
    for module, dumps in sorted(parts.items()):
        h.update(f"\0{module}:".encode())
        for d in dumps:
            h.update(f"\0{d}".encode())
    for module in sorted(whole):
        h.update(f"\0{module}\0{_file_digest(pkg.file(module))}".encode())
    return h.hexdigest()


#: A rule's ``code`` param, and the same read back (:func:`labelled_script`).
_LABEL = "code of {script} with convdp: {digest}"
_LABEL_RE = re.compile(r"code of (\S+) with convdp: [0-9a-f]{64}")


@functools.cache  # once per process and script: a job's, or each rule's in Snakemake's
def code_label(script: str | Path) -> str:
    """A rule's ``code`` param: :func:`script_digest` of ``script``, labelled with the
    script's name (Snakemake's reason for a rerun shows the value alone)."""
    return _LABEL.format(script=Path(script).name, digest=script_digest(script))


def labelled_script(label) -> str | None:
    """The name of the script a :func:`code_label` is of; None for anything else."""
    match = _LABEL_RE.fullmatch(str(label))
    return match[1] if match else None
