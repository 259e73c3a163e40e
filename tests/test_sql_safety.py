"""No SQL from input text: webhook_core builds SQL only from program text, numbers and quoted values.

:class:`SqlChecker` reads the package's source (its syntax trees; nothing is run). It finds the SQL
the package builds (every f-string, ``str.format`` or ``+`` / ``%`` on a string constant whose text
looks like SQL, and the first argument of every ``.execute`` / ``.executemany`` / ``.sql`` /
``.query`` call) and requires every value put into it to be *safe*:

* a call to ``quote_literal`` or ``quote_identifier`` (webhook_core/quoting.py), whatever its argument;
* a number: a numeric constant, ``int()``, ``len()``, …, a comparison, or a name, parameter or package
  function annotated with a numeric type (``int``, ``float``, ``bool``, a list of them; mypy holds
  the code to its annotations);
* program text: a string constant, a module constant (an UPPER_CASE name or attribute);
* a local name all of whose assignments (and ``append`` / ``extend``) are safe, or a loop or
  comprehension variable over something safe (a constant, ``range``, ``enumerate``'s count);
* SQL another package function or property builds: followed to its ``return``\\ s, checked alike;
* a parameter named in :data:`SQL_PARAMETERS` (SQL fragments by contract, such as a subquery);
  then every call in the package must pass that parameter something safe;
* strings joined, concatenated, formatted, picked (``a if c else b``) or indexed from safe parts.

Anything else is a finding: an attribute of an object (``location.name``), a call the checker does
not follow (``str(path)``), a value read from the database. It errs toward flagging. What it does
not see: SQL built without a SQL-looking constant and never passed to a query method; a function
called under another name (passed as a value); callers outside the package (a parameter in
:data:`SQL_PARAMETERS` is SQL by contract). It resolves a call by its bare name across the package
(two functions of one name are both followed) and trusts module constants as program text.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from webhook_core.quoting import quote_identifier, quote_literal

PACKAGE = Path(__file__).resolve().parent.parent / "webhook_core"

#: Parameters that carry SQL the caller built, and why; the checker checks every call's argument for them.
SQL_PARAMETERS = {
    "sql": "a whole statement",
    "query": "a SELECT to export",
    "source": "a relation to read: a table's name, a subquery or a table function call",
    "rows": "a relation to read",
    "staged": "a relation to read",
    "table": "a table's name",
    "text": "a column's name (rules.macros.pair_sql)",
    "plain": "a column's name (rules.macros.pair_sql)",
    "row": "a column's name (load.numbering.skipped_lines_before)",
    "first_line": "a SQL condition (load.formats.json_line_text)",
    "kind": "a SQL type (rules.keys._list_at)",
    "passthrough": "column names (rules.keys.keys_sql)",
    "end": "the observation end, a SQL expression (audit.replay._build_sql)",
    "curve_sql": "a Kaplan–Meier query (analysis.survival.thinned_sql)",
    "column": "a column or a SQL expression over columns (audit.filters._webhook_condition)",
    "versions": "a relation's qualified name (audit.filters._webhook_condition)",
}

_SQL_WORDS = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|COPY|COMMENT|SET|DESCRIBE|PRAGMA|"
                        r"ATTACH|FROM|WHERE|JOIN|VALUES|CASE|WHEN|CAST)\b|\bread_(csv|parquet|text|json)\(|"
                        r"\bwa_\w+\(")  # (the package's SQL macros, rules/macros.py)
_QUERY_METHODS = {"execute", "executemany", "sql", "query"}
_QUOTING = {"quote_literal", "quote_identifier"}
_NUMBER_CALLS = {"int", "float", "bool", "len", "ord", "round", "abs", "range", "hash"}
#: Calls whose result is safe when their arguments are.
_PASSING_CALLS = {"str", "min", "max", "sum", "sorted", "list", "tuple", "set", "reversed", "zip"}
_STRING_METHODS = {"join", "replace", "format", "strip", "lstrip", "rstrip", "lower", "upper", "items", "keys",
                   "values", "fromkeys", "split"}
_NUMERIC_TYPES = {"int", "float", "bool"}
_CONTAINERS = {"list", "tuple", "set", "frozenset", "Sequence", "Iterable", "Iterator", "Collection"}
_MAPPINGS = {"dict", "Mapping"}
_CONSTANT = re.compile(r"_?[A-Z][A-Z0-9_]*")
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)


@dataclass(frozen=True, order=True)
class Finding:
    path: str
    line: int
    value: str
    sql_line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.value} reaches the SQL of line {self.sql_line} unquoted"


def _looks_like_sql(text: str) -> bool:
    return _SQL_WORDS.search(text) is not None


def _numeric(annotation: ast.expr | None) -> bool:
    """Whether an annotation says "a number" (or None, or a container of numbers)."""
    if isinstance(annotation, ast.Name):
        return annotation.id in _NUMERIC_TYPES
    if isinstance(annotation, ast.Constant):
        return annotation.value is None or annotation.value is Ellipsis
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
        return _numeric(annotation.left) and _numeric(annotation.right)
    if isinstance(annotation, ast.Subscript) and isinstance(annotation.value, ast.Name):
        arguments = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else [annotation.slice]
        return annotation.value.id in _CONTAINERS and all(_numeric(a) for a in arguments)
    return False


def _numeric_values(annotation: ast.expr | None) -> bool:
    """Whether an annotation says "a mapping to numbers" (``dict[str, int]``)."""
    return (isinstance(annotation, ast.Subscript) and isinstance(annotation.value, ast.Name)
            and annotation.value.id in _MAPPINGS and isinstance(annotation.slice, ast.Tuple)
            and len(annotation.slice.elts) == 2 and _numeric(annotation.slice.elts[1]))


def _target_names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [name for element in target.elts for name in _target_names(element)]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return []


def _own_nodes(scope: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a function or module body, not those of the functions and classes in it."""
    for child in ast.iter_child_nodes(scope):
        if isinstance(child, (*_SCOPES, ast.ClassDef)):
            continue
        yield child
        yield from _own_nodes(child)


class SqlChecker:
    """The rules of the module docstring over ``sources`` (path -> Python source), read together."""

    def __init__(self, sources: dict[str, str]) -> None:
        self.trees = {path: ast.parse(text) for path, text in sources.items()}
        self.parent: dict[ast.AST, ast.AST] = {}
        self.path_of: dict[ast.AST, str] = {}
        self.functions: dict[str, list[ast.FunctionDef | ast.AsyncFunctionDef]] = {}
        for path, tree in self.trees.items():
            for node in ast.walk(tree):
                self.path_of[node] = path
                for child in ast.iter_child_nodes(node):
                    self.parent[child] = node
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    self.functions.setdefault(node.name, []).append(node)
        self.properties = {name for name, defs in self.functions.items()
                           if any(isinstance(d, ast.Name) and d.id == "property"
                                  for f in defs for d in f.decorator_list)}
        self.classes = {node.name for tree in self.trees.values() for node in ast.walk(tree)
                        if isinstance(node, ast.ClassDef)}
        # Attributes every class of the package that has them annotates as numbers (dataclass fields).
        fields: dict[str, bool] = {}
        for tree in self.trees.values():
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef):
                    for statement in node.body:
                        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                            name = statement.target.id
                            fields[name] = fields.get(name, True) and _numeric(statement.annotation)
        self.numeric_fields = {name for name, numeric in fields.items() if numeric}
        self._active: set[int] = set()
        #: (function, parameter) pairs taken as SQL by SQL_PARAMETERS: their call sites are checked.
        self.sql_parameters: set[tuple[ast.AST, str]] = set()

    # ------------------------------------------------------------------ entry point

    def findings(self) -> list[Finding]:
        found: dict[ast.AST, ast.AST] = {}  # what is unsafe -> the first SQL it reaches

        def note(sql: ast.AST, parts: list[ast.AST]) -> None:
            for part in parts:
                found.setdefault(part, sql)

        for tree in self.trees.values():
            for node in ast.walk(tree):
                note(node, self._check_root(node))
        checked_calls: set[tuple[int, str]] = set()
        while True:  # checking an argument may make a parameter of its caller SQL too
            pending = [(call, name, argument) for call, name, argument in self._sql_arguments()
                       if (id(call), name) not in checked_calls]
            if not pending:
                break
            for call, name, argument in pending:
                checked_calls.add((id(call), name))
                note(argument, self.unsafe(argument))
        return sorted({Finding(self.path_of[part], getattr(part, "lineno", 0), ast.unparse(part),
                               getattr(sql, "lineno", 0)) for part, sql in found.items()})

    def _check_root(self, node: ast.AST) -> list[ast.AST]:
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
            return self.unsafe(node) if _looks_like_sql(text) else []
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            receiver = node.func.value
            if node.func.attr == "format" and isinstance(receiver, ast.Constant) and isinstance(receiver.value, str):
                return self.unsafe(node) if _looks_like_sql(receiver.value) else []
            if node.func.attr in _QUERY_METHODS and node.args:
                return self.unsafe(node.args[0])
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
            constants = [side.value for side in (node.left, node.right)
                         if isinstance(side, ast.Constant) and isinstance(side.value, str)]
            if any(_looks_like_sql(text) for text in constants):
                return self.unsafe(node)
        return []

    def _sql_arguments(self) -> Iterator[tuple[ast.Call, str, ast.expr]]:
        """Every argument the package passes for a parameter taken as SQL."""
        for tree in self.trees.values():
            for call in ast.walk(tree):
                if not isinstance(call, ast.Call):
                    continue
                method = isinstance(call.func, ast.Attribute)
                name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
                for function in self.functions.get(name, []):
                    parameters = [a.arg for a in (*function.args.posonlyargs, *function.args.args)]
                    if method and isinstance(self.parent.get(function), ast.ClassDef):
                        parameters = parameters[1:]  # self
                    passed = [*zip(parameters, call.args, strict=False),
                              *((k.arg, k.value) for k in call.keywords if k.arg is not None)]
                    for parameter, argument in passed:
                        if (function, parameter) in self.sql_parameters and not isinstance(argument, ast.Starred):
                            yield call, parameter, argument

    # ------------------------------------------------------------------ is a value safe?

    def unsafe(self, node: ast.AST) -> list[ast.AST]:
        """The parts of ``node`` that may carry text from outside the program (none: it is safe)."""
        if id(node) in self._active:  # a cycle (x = x + …): the other assignments decide
            return []
        self._active.add(id(node))
        try:
            return self._unsafe(node)
        finally:
            self._active.discard(id(node))

    def _all(self, nodes: list[ast.AST] | list[ast.expr]) -> list[ast.AST]:
        return [part for node in nodes for part in self.unsafe(node)]

    def _unsafe(self, node: ast.AST) -> list[ast.AST]:
        match node:
            case ast.Constant() | ast.Compare():
                return []
            case ast.JoinedStr(values=values):
                return self._all([v.value for v in values if isinstance(v, ast.FormattedValue)])
            case ast.BinOp(left=left, right=right):
                return self._all([left, right])
            case ast.UnaryOp(operand=operand):
                return self.unsafe(operand)
            case ast.BoolOp(values=values):
                return self._all(values)
            case ast.IfExp(body=body, orelse=orelse):
                return self._all([body, orelse])
            case ast.List(elts=elements) | ast.Tuple(elts=elements) | ast.Set(elts=elements):
                return self._all(elements)
            case ast.Starred(value=value):
                return self.unsafe(value)
            case ast.Dict(keys=keys, values=values):
                return self._all([k for k in keys if k is not None] + values)
            case ast.ListComp(elt=element) | ast.SetComp(elt=element) | ast.GeneratorExp(elt=element):
                return self.unsafe(element)
            case ast.DictComp(key=key, value=value):
                return self._all([key, value])
            case ast.Subscript(value=value):
                if isinstance(value, ast.Name) and _numeric_values(self._annotation(value)):
                    return []
                return self.unsafe(value)
            case ast.Name():
                return self._name(node)
            case ast.Attribute(value=value, attr=attr):
                if _CONSTANT.fullmatch(attr) or attr in self.numeric_fields:
                    return []
                if attr in self.properties:
                    return self._returns(attr)
                return [node] if self.unsafe(value) else []
            case ast.Call():
                return self._call(node)
        return [node]

    def _call(self, call: ast.Call) -> list[ast.AST]:
        arguments: list[ast.expr] = [*call.args, *(k.value for k in call.keywords)]
        if isinstance(call.func, ast.Name):
            name = call.func.id
            if name in _QUOTING or name in _NUMBER_CALLS:
                return []
            if name in _PASSING_CALLS or name == "enumerate":
                return self._all(arguments)
            if name in self.functions:
                return self._returns(name)
        elif isinstance(call.func, ast.Attribute):
            if call.func.attr in _STRING_METHODS:
                return self._all([call.func.value, *arguments])
            if call.func.attr in self.functions:
                return self._returns(call.func.attr)
        elif isinstance(call.func, ast.Subscript) and isinstance(call.func.value, ast.Name):
            registered = self._registry(call.func.value.id)
            if registered:
                return [part for name in registered for part in self._returns(name)]
        return [call]

    def _registry(self, name: str) -> list[str]:
        """The package functions a module-level constant dict ``name`` maps to (a registry such as
        ``DISPATCH_READERS[suffix](...)``: calling an entry returns what they return); [] otherwise."""
        if not _CONSTANT.fullmatch(name):
            return []
        for tree in self.trees.values():
            for node in tree.body:
                target = node.target if isinstance(node, ast.AnnAssign) else (
                    node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
                if (isinstance(target, ast.Name) and target.id == name and isinstance(node.value, ast.Dict)
                        and node.value.values and all(isinstance(v, ast.Name) and v.id in self.functions
                                                      for v in node.value.values)):
                    return [v.id for v in node.value.values if isinstance(v, ast.Name)]
        return []

    def _returns(self, name: str) -> list[ast.AST]:
        """What the package functions called ``name`` return (numbers by annotation are safe)."""
        found: list[ast.AST] = []
        for function in self.functions[name]:
            if _numeric(function.returns):
                continue
            returned = [n.value for n in _own_nodes(function) if isinstance(n, ast.Return) and n.value is not None]
            found += self._all(returned)
        return found

    def _annotation(self, name: ast.Name) -> ast.expr | None:
        """The annotation of the parameter or annotated assignment ``name`` refers to, if any."""
        for scope in self._scopes(name):
            if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for argument in (*scope.args.posonlyargs, *scope.args.args, *scope.args.kwonlyargs):
                    if argument.arg == name.id:
                        return argument.annotation
            for node in _own_nodes(scope):
                if isinstance(node, ast.AnnAssign) and _target_names(node.target) == [name.id]:
                    return node.annotation
        return None

    def _scopes(self, node: ast.AST) -> Iterator[ast.AST]:
        while node in self.parent:
            node = self.parent[node]
            if isinstance(node, (*_SCOPES, *_COMPREHENSIONS, ast.Module)):
                yield node

    def _name(self, name: ast.Name) -> list[ast.AST]:
        for scope in self._scopes(name):
            if isinstance(scope, _COMPREHENSIONS):
                for generator in scope.generators:
                    if name.id in _target_names(generator.target):
                        return self._element(generator.iter, generator.target, name.id)
                continue
            if isinstance(scope, ast.Module) and (_CONSTANT.fullmatch(name.id) or name.id in self.classes):
                return []
            if isinstance(scope, _SCOPES):
                arguments = scope.args
                for argument in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
                                 arguments.vararg, arguments.kwarg):
                    if argument is not None and argument.arg == name.id:
                        return self._parameter(scope, argument, name)
            values = self._assignments(scope, name.id)
            if values is not None:
                return values
        return [name]

    def _parameter(self, function: ast.AST, argument: ast.arg, name: ast.Name) -> list[ast.AST]:
        if _numeric(argument.annotation):
            return []
        if argument.arg in SQL_PARAMETERS:
            self.sql_parameters.add((function, argument.arg))
            return []
        return [name]

    def _assignments(self, scope: ast.AST, name: str) -> list[ast.AST] | None:
        """What is unsafe in the values bound to ``name`` in ``scope``; None when it binds none."""
        bound = False
        found: list[ast.AST] = []
        for node in _own_nodes(scope):
            values: list[ast.AST] = []
            match node:
                case ast.Assign(targets=targets, value=value):
                    for target in targets:
                        if self._numeric_item(target, value, name):
                            bound = True
                        elif name in _target_names(target) or (
                                isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name)
                                and target.value.id == name):
                            values.append(value)
                case ast.AnnAssign(target=ast.Name(id=target), annotation=annotation, value=value) if target == name:
                    bound = True
                    if value is not None and not _numeric(annotation):
                        values.append(value)
                case ast.AugAssign(target=ast.Name(id=target), value=value) if target == name:
                    values.append(value)
                case ast.NamedExpr(target=ast.Name(id=target), value=value) if target == name:
                    values.append(value)
                case ast.For(target=target, iter=iterable) if name in _target_names(target):
                    bound = True
                    found += self._element(iterable, target, name)
                case ast.Call(func=ast.Attribute(value=ast.Name(id=receiver), attr=method), args=arguments) if (
                        receiver == name and method in {"append", "extend", "insert", "add"}):
                    values += arguments[-1:]
                case ast.withitem(optional_vars=target) if target is not None and name in _target_names(target):
                    bound = True
                    found.append(target)  # whatever __enter__ gives
                case ast.ExceptHandler(name=handler) if handler == name:
                    bound = True
                    found.append(node)
                case (ast.Import(names=aliases) | ast.ImportFrom(names=aliases)) if any(
                        (a.asname or a.name) == name for a in aliases):
                    bound = True
                    found.append(node)
            if values:
                bound = True
                found += self._all(values)
        return found if bound else None

    def _numeric_item(self, target: ast.expr, value: ast.expr, name: str) -> bool:
        """Whether ``target = value`` unpacks into ``name`` a number a package function's annotation
        promises (``line, names = _header(path)`` with ``-> tuple[int, list[str]]``)."""
        if not (isinstance(target, ast.Tuple) and isinstance(value, ast.Call)):
            return False
        positions = [i for i, element in enumerate(target.elts) if isinstance(element, ast.Name) and element.id == name]
        callee = value.func.id if isinstance(value.func, ast.Name) else getattr(value.func, "attr", "")
        functions = self.functions.get(callee, [])
        if not positions or not functions:
            return False
        for function in functions:
            returns = function.returns
            if not (isinstance(returns, ast.Subscript) and isinstance(returns.value, ast.Name)
                    and returns.value.id == "tuple" and isinstance(returns.slice, ast.Tuple)
                    and len(returns.slice.elts) == len(target.elts) and _numeric(returns.slice.elts[positions[0]])):
                return False
        return True

    def _element(self, iterable: ast.expr, target: ast.expr, name: str) -> list[ast.AST]:
        """What is unsafe in ``name``, bound by ``for target in iterable``."""
        if isinstance(iterable, ast.Call) and isinstance(iterable.func, ast.Name) and iterable.args:
            if iterable.func.id == "range":
                return []
            if iterable.func.id == "enumerate" and isinstance(target, ast.Tuple) and target.elts:
                counter = target.elts[0]
                if isinstance(counter, ast.Name) and counter.id == name:
                    return []
                return self.unsafe(iterable.args[0])
        return self.unsafe(iterable)


def check_source(source: str, path: str = "snippet.py") -> list[str]:
    return [str(finding) for finding in SqlChecker({path: textwrap.dedent(source)}).findings()]


def test_webhook_core_builds_sql_only_from_quoted_values() -> None:
    sources = {str(path.relative_to(PACKAGE.parent)): path.read_text(encoding="utf-8")
               for path in sorted(PACKAGE.rglob("*.py"))}
    findings = SqlChecker(sources).findings()
    assert not findings, "\n".join(str(f) for f in findings) + (
        "\npass text from files and users through webhook_core.quoting.quote_literal / quote_identifier "
        "or bind it as a parameter (con.execute(sql, [value]))")


def test_checker_follows_a_registry_of_functions() -> None:
    """A call through a dict of package functions (``READERS[suffix](...)``) is as safe as what they return."""
    source = """
        def _safe(con, path: Path) -> str:
            return "stage"

        def _leaky(con, path: Path) -> str:
            return path.name

        READERS = {"csv": _safe, "jsonl": %s}

        def load(con, path: Path) -> None:
            staged = READERS[path.suffix](con, path)
            con.execute(f"SELECT * FROM {staged}")
    """
    assert check_source(source % "_safe") == []
    assert check_source(source % "_leaky") == ["snippet.py:6: path.name reaches the SQL of line 12 unquoted"]


def test_checker_flags_the_csv_header_pattern() -> None:
    """The pattern that let a dispatches.csv header cell run SQL (the header's names pasted into read_csv)."""
    findings = check_source("""
        def _csv_header(path: Path) -> tuple[int, list[str]]:
            with path.open() as handle:
                for number, line in enumerate(handle, 1):
                    return number, [name.strip() for name in line.split(",")]

        def stage(con: duckdb.DuckDBPyConnection, path: Path) -> None:
            header_line, header = _csv_header(path)
            source = f\"\"\"read_csv({quote_literal(str(path))}, skip = {header_line - 1},
                                 columns = {{{", ".join(f"'{c}': 'VARCHAR'" for c in header)}}})\"\"\"
            con.execute(f"CREATE TABLE csv_rows AS SELECT * FROM {source}")
    """)
    assert findings == ["snippet.py:3: handle reaches the SQL of line 9 unquoted"]


@pytest.mark.parametrize(("source", "expected"), [
    pytest.param("""
        def prepare(con: duckdb.DuckDBPyConnection, memory_limit: str) -> None:
            con.execute(f"SET memory_limit = '{memory_limit}'")
    """, ["snippet.py:3: memory_limit reaches the SQL of line 3 unquoted"], id="parameter"),
    pytest.param("""
        def export(con: duckdb.DuckDBPyConnection, path: Path) -> None:
            literal = "'" + str(path).replace("'", "''") + "'"
            con.execute(f"COPY t TO {literal}")
    """, ["snippet.py:3: path reaches the SQL of line 4 unquoted"], id="quoted by hand"),
    pytest.param("""
        def export(con: duckdb.DuckDBPyConnection, path: Path) -> None:
            con.execute("COPY t TO '{}'".format(path))
    """, ["snippet.py:3: path reaches the SQL of line 3 unquoted"], id="format"),
    pytest.param("""
        def read(con: duckdb.DuckDBPyConnection, path: Path) -> None:
            con.execute("SELECT * FROM read_text('" + path.name + "')")
    """, ["snippet.py:3: path.name reaches the SQL of line 3 unquoted"], id="concatenation"),
    pytest.param("""
        def drop(con: duckdb.DuckDBPyConnection) -> None:
            for (name,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall():
                con.execute(f"DROP TABLE {name}")
    """, ['snippet.py:3: con.execute(\'SELECT table_name FROM duckdb_tables()\').fetchall() '
          'reaches the SQL of line 4 unquoted'], id="value from the database"),
    pytest.param("""
        def header_sql(location: Location) -> str:
            return f"wa_captured_header(headers, '{location.name}')"
    """, ["snippet.py:3: location.name reaches the SQL of line 3 unquoted"], id="attribute"),
    pytest.param("""
        def run(con: duckdb.DuckDBPyConnection, sql: str) -> None:
            con.execute(sql)

        def main(con: duckdb.DuckDBPyConnection, argv: list[str]) -> None:
            run(con, argv[1])
    """, ["snippet.py:6: argv reaches the SQL of line 6 unquoted"], id="SQL parameter given input"),
])
def test_checker_flags_unquoted_values(source: str, expected: list[str]) -> None:
    assert check_source(source) == expected


def test_checker_accepts_quoted_values_numbers_and_constants() -> None:
    assert check_source("""
        COLUMNS = ("lead_id", "webhook_id")

        def _list_at(values: list[str], kind: str) -> str:
            return f"CAST(NULL AS {kind})" if not values else f"[{', '.join(quote_literal(v) for v in values)}]"

        def run(con: duckdb.DuckDBPyConnection, sql: str) -> None:
            con.execute(sql)

        def load(con: duckdb.DuckDBPyConnection, path: Path, names: list[str], limit: str, rows: list[int]) -> None:
            con.execute("SET memory_limit = ?", [limit])
            picked = ", ".join(f"{quote_identifier(n)} AS c{i}" for i, n in enumerate(names))
            source = f"read_csv({quote_literal(str(path))})"
            con.execute(f"SELECT {picked}, {', '.join(COLUMNS)}, {len(names) + 1} FROM {source}")
            run(con, f"SELECT {_list_at(names, 'VARCHAR')} WHERE line IN ({', '.join(str(r) for r in rows)})")
    """) == []


#: Text that would end or escape a literal or identifier written naively.
AWKWARD = ["it's", 'say "hi"', "a\\b", "a\\'b", "'; COPY (SELECT 1) TO 'pwned.txt'; --", '"; DROP TABLE t; --',
           "a\x00b", "\x00", "\x00'; COPY (SELECT 1) TO 'pwned.txt'; --", "$$x$$", "E'\\x41'", "line\nbreak\r",
           "/* open", "é €😀"]


@pytest.mark.parametrize("text", [*AWKWARD, ""])
def test_quote_literal_gives_the_text_back(text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    con = duckdb.connect()
    assert con.execute(f"SELECT {quote_literal(text)}").fetchall() == [(text,)]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text", AWKWARD)
def test_quote_identifier_names_a_column(text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t ({quote_identifier(text)} INTEGER)")
    assert con.execute(f"SELECT {quote_identifier(text)} FROM t").description[0][0] == text
    assert list(tmp_path.iterdir()) == []


def test_quote_literal_writes_nul_as_chr_0() -> None:
    """A NUL is never inside the quotes (a parser reading up to a NUL would end the statement there)."""
    assert quote_literal("a\x00'b") == "('a' || chr(0) || '''b')"
