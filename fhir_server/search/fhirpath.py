"""FHIRPath evaluation for search-parameter indexing.

``compile_expression(expression, resource_type)`` splits a SearchParameter expression into its
top-level union branches and keeps those that apply to ``resource_type`` (rooted at that type,
at ``Resource``/``DomainResource``, or a bare relative path such as ``id``). Each branch is
compiled once into one of two forms:

* **Fast path** -- a tuple of small closures that walk the plain JSON dict. It covers the forms
  the official SearchParameters use: dotted paths (lists flattened at every step), ``[n]``
  indexers, choice elements (``value.as(Quantity)``, ``(value as Quantity)``,
  ``value.ofType(Quantity)`` -> ``valueQuantity``; a bare ``effective`` -> every
  ``effectiveXxx`` key the R4 model allows), ``where(resolve() is T)``,
  ``where(field = 'literal')`` and ``extension('url')``. Element types are tracked at compile
  time with fhirpathpy's R4 model, so nothing is parsed at evaluation time.
* **Fallback** -- anything else (``Patient.deceased.exists() and Patient.deceased != false``) is
  compiled once with ``fhirpathpy``; its results are turned back into plain JSON values.

``resolve()`` fetches nothing; both paths use one rule (``reference_type``): a reference points
at the type named by its literal ``reference`` (``Patient/1``, ``https://host/fhir/Patient/1``,
``.../_history/2``), else at its ``type`` element. ``urn:uuid:`` and ``#contained`` references
without ``type`` point at nothing.

Deliberate leniency: ``as`` on a collection of several items behaves like ``ofType`` (strict
FHIRPath, and fhirpathpy, raise), since the SearchParameters apply it to e.g. every
``useContext.value``. ``extension(url)`` returns every match (fhirpathpy returns the first).

Each compiled function has ``roots``: the top-level keys its paths start at, or None when it
may find something in any resource (a fallback branch, such as the one above). A resource
that has none of them gives an empty result, so the indexer need not call the function.

Results are the original JSON objects (dicts for complex elements, str/bool/int/float for
primitives): treat them as read-only. A union (``a | b``) removes duplicates, as FHIRPath does.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from functools import lru_cache

import fhirpathpy
from fhirpathpy.engine.nodes import FP_Quantity, FP_Type, ResourceNode
from fhirpathpy.models import models

__all__ = ["compile_expression", "compile_relative", "reference_type"]

Evaluator = Callable[[dict], list]

_R4 = models["r4"]
_PATH2TYPE: dict[str, str] = _R4["path2Type"]
_CHOICES: dict[str, list[str]] = _R4["choiceTypePaths"]
_ELSEWHERE: dict[str, str] = _R4["pathsDefinedElsewhere"]
_PARENT: dict[str, str] = _R4["type2Parent"]
# Backbone elements have no path2Type entry of their own, only their children do.
_BACKBONES = {p.rsplit(".", i)[0] for p in (*_PATH2TYPE, *_CHOICES) for i in range(1, p.count("."))}

_NAME = re.compile(r"([A-Za-z_]\w*)(?:\[(\d+)\])?")
_CALL = re.compile(r"(\w+)\((.*)\)", re.DOTALL)
_TYPE = re.compile(r"(?:FHIR\.)?([A-Za-z]\w*)")
_WHERE_REF = re.compile(r"resolve\(\)\s+is\s+(?:FHIR\.)?([A-Z]\w*)")
_WHERE_EQ = re.compile(r"([a-z]\w*)\s*=\s*'([^'\\]*)'")
_QUOTED = re.compile(r"'([^'\\]*)'")
_EXISTS_NOT_FALSE = re.compile(r"(.+)\.exists\(\)\s+and\s+\1\s*!=\s*false")


class _Unsupported(Exception):
    """The fast path cannot compile this branch: use fhirpathpy."""


def reference_type(ref: object) -> str | None:
    """The resource type a Reference dict points at (the `resolve()` rule above)."""
    if type(ref) is not dict:
        return None
    literal = ref.get("reference")
    if type(literal) is str:
        kind = _literal_type(literal)
        if kind:
            return kind
    kind = ref.get("type")
    return kind if type(kind) is str else None


@lru_cache(maxsize=16384)  # the resources of a bundle point at the same few patients
def _literal_type(literal: str) -> str | None:
    cut = literal.find("/_history/")
    parts = (literal if cut < 0 else literal[:cut]).split("/")
    return parts[-2] if len(parts) >= 2 and parts[-1] and parts[-2][:1].isupper() else None


# ---------------------------------------------------------------------------- compile-time text


def _top_level(text: str):
    """(index, char, depth) of each character outside quoted strings."""
    depth, quote = 0, False
    for i, ch in enumerate(text):
        if quote or ch == "'":
            quote = ch != "'" or text[i - 1] == "\\" if quote else True
            continue
        depth -= ch in ")]"
        yield i, ch, depth
        depth += ch in "(["


def _split_top(text: str, sep: str) -> list[str]:
    parts, start = [], 0
    for i, _, depth in _top_level(text):
        if depth == 0 and i >= start and text.startswith(sep, i):
            parts.append(text[start:i])
            start = i + len(sep)
    return [p.strip() for p in (*parts, text[start:])]


def _close(text: str) -> int:
    """Index of the parenthesis closing the first `(` in `text`, -1 if none."""
    opened = False
    for i, ch, depth in _top_level(text):
        opened = opened or ch == "("
        if opened and ch == ")" and depth == 0:
            return i
    return -1


def _strip_parens(text: str) -> str:
    text = text.strip()
    while text.startswith("(") and _close(text) == len(text) - 1:
        text = text[1:-1].strip()
    return text


def _as_to_call(text: str) -> str:
    """`x as T` -> `x.as(T)`, and `(x as T).rest` -> `x.as(T).rest`."""
    head, rest = text, ""
    if text.startswith("("):
        end = _close(text)
        head, rest = text[1:end], text[end + 1:]
        if end < 0 or not rest.startswith("."):
            raise _Unsupported(text)
    parts = _split_top(head, " as ")
    if len(parts) == 2 and _TYPE.fullmatch(parts[1]):
        return f"{_strip_parens(parts[0])}.as({parts[1]}){rest}"
    if len(parts) > 2 or rest:
        raise _Unsupported(text)
    return text


# ---------------------------------------------------------------------------- R4 model


def _canon(name: str) -> str:
    """Choice lists spell primitives `DateTime`; the type is `dateTime`."""
    low = name[:1].lower() + name[1:]
    return low if name not in _PARENT and low in _PARENT else name


def _is_a(type_name: str, ancestor: str) -> bool:
    type_name, ancestor = _canon(type_name), _canon(ancestor)
    while type_name and type_name != ancestor:
        type_name = _PARENT.get(type_name)
    return type_name == ancestor


def _element(ctx: str | None, name: str) -> tuple[str | None, list[str] | None]:
    """(type or backbone path, choice types) of `ctx.name`; (None, None) if unknown."""
    while ctx:
        path = _ELSEWHERE.get(f"{ctx}.{name}", f"{ctx}.{name}")
        if path in _CHOICES:
            return path, _CHOICES[path]
        if path in _PATH2TYPE:
            return _PATH2TYPE[path], None
        if path in _BACKBONES:
            return path, None
        ctx = _PARENT.get(ctx)  # inherited elements: Observation.meta -> Resource.meta
    return None, None


def _is_primitive(ctx: str | None) -> bool:
    """Primitive elements keep their extensions under `_name`: left to the fallback."""
    return bool(ctx) and (ctx.startswith("System.") or ctx[0].islower())


# ---------------------------------------------------------------------------- fast-path steps
# Each step maps a list of nodes to a list of nodes; JSON nulls (placeholders in primitive
# arrays that carry `_name` extensions) are dropped.


def _add(out: list, value) -> None:
    if type(value) is list:
        out.extend(value if None not in value else [v for v in value if v is not None])
    elif value is not None:
        out.append(value)


def _member(keys: tuple[str, ...]):
    if len(keys) == 1:  # the common case, kept lean (this is the hottest code of indexing)
        key = keys[0]

        def step(coll):
            out = []
            for node in coll:
                if type(node) is dict:
                    value = node.get(key)
                    if type(value) is list:
                        out += value if None not in value else [v for v in value if v is not None]
                    elif value is not None:
                        out.append(value)
            return out
        step.keys = keys
        return step

    def step_any(coll):
        out = []
        for node in coll:
            if type(node) is dict:
                for key in keys:
                    if key in node:
                        _add(out, node[key])
        return out
    step_any.keys = keys
    return step_any


def _member_untyped(name: str):
    """Element of unknown type: the key itself, else any `name` + Uppercase choice key."""
    size = len(name)

    def step(coll):
        out = []
        for node in coll:
            if type(node) is dict:
                for key in (name,) if name in node else node:
                    if key == name or (key.startswith(name) and key[size:size + 1].isupper()):
                        _add(out, node[key])
        return out
    return step


def _where_eq(field: str, literal: str):
    def matches(node):
        value = node.get(field) if type(node) is dict else None
        return (value[0] if type(value) is list and len(value) == 1 else value) == literal
    return lambda coll: [n for n in coll if matches(n)]


def _extension(url: str):
    def step(coll):
        return [e for n in coll if type(n) is dict for e in n.get("extension", ())
                if type(e) is dict and e.get("url") == url]
    step.keys = ("extension",)
    return step


def _compile_steps(path: str, ctx: str | None, rooted: bool) -> list:
    """Steps for a dotted path; `ctx` is the current element's type or backbone path."""
    tokens = _split_top(path, ".")
    if rooted and tokens[0][:1].isupper():
        tokens = tokens[1:]  # the root type name selects the resource itself
    steps: list = []
    choice = prev = None  # choice types of the last element; _NAME match of the last token
    for token in tokens:
        name, call = _NAME.fullmatch(token), _CALL.fullmatch(token)
        arg = call[2].strip() if call else ""
        if name:
            ctx, choice = _element(ctx, name[1])
            keys = tuple(name[1] + t for t in choice) if choice else (name[1],)
            steps.append(_member(keys) if ctx else _member_untyped(name[1]))
            ctx = None if choice else ctx
            if name[2] is not None:
                steps.append(lambda coll, i=int(name[2]): coll[i:i + 1])
        elif not call or _close(token) != len(token) - 1:  # not one balanced call
            raise _Unsupported(token)
        elif call[1] in ("as", "ofType") and _TYPE.fullmatch(arg) and prev and prev[2] is None:
            wanted = _TYPE.fullmatch(arg)[1]
            if choice:  # keys of the allowed types that are `wanted` or a subtype of it
                steps[-1] = _member(tuple(prev[1] + t for t in choice if _is_a(t, wanted)))
            elif ctx is None:  # type unknown: assume a choice element (`value.as(Quantity)`)
                steps[-1] = _member((prev[1] + wanted[:1].upper() + wanted[1:],))
            elif not _is_a(ctx, wanted):
                raise _Unsupported(token)
            ctx, choice = _canon(wanted), None
        elif call[1] == "where" and _WHERE_REF.fullmatch(arg):
            kind = _WHERE_REF.fullmatch(arg)[1]
            steps.append(lambda coll, kind=kind: [n for n in coll if reference_type(n) == kind])
        elif call[1] == "where" and _WHERE_EQ.fullmatch(arg):
            steps.append(_where_eq(*_WHERE_EQ.fullmatch(arg).groups()))
        elif call[1] == "extension" and _QUOTED.fullmatch(arg) and not _is_primitive(ctx):
            steps.append(_extension(_QUOTED.fullmatch(arg)[1]))
            ctx, choice = "Extension", None
        else:
            raise _Unsupported(token)
        prev = name
    return steps


def _fast(branch: str, ctx: str | None, rooted: bool, distinct: bool = False) -> Evaluator:
    """The branch as a chain of steps; `distinct`: remove duplicates (a union's only branch)."""
    test = _EXISTS_NOT_FALSE.fullmatch(branch)
    if test:  # one value: distinct anyway
        return _exists_not_false(_fast(test[1], ctx, rooted))
    steps = tuple(_compile_steps(_as_to_call(branch), ctx, rooted))
    if len(steps) == 1:  # most paths: one step from the resource, kept to one call
        only = steps[0]
        if distinct:
            def run(node):
                found = only([node])
                return found if len(found) < 2 else _distinct(found)
        else:
            def run(node):
                return only([node])
    else:
        def run(node):
            coll = [node]
            for step in steps:
                coll = step(coll)
                if not coll:
                    break
            return _distinct(coll) if distinct and len(coll) > 1 else coll
    run.roots = getattr(steps[0], "keys", None) if steps else None
    return run


def _exists_not_false(path: Evaluator) -> Evaluator:
    """`P.exists() and P != false` (`Patient.deceased`): false when P is empty or the one value
    false, else true (a date is not false)."""
    def run(node):
        found = path(node)
        return [bool(found) and not (len(found) == 1 and found[0] is False)]
    run.roots = None  # true or false, never empty: it applies to every resource
    return run


# ---------------------------------------------------------------------------- fallback


def _fp_resolve(inputs: list) -> list:
    """fhirpathpy user function: a typed stub per reference, so `resolve() is T` works."""
    return [ResourceNode.create_node({"resourceType": kind})
            for kind in map(reference_type, inputs) if kind]


_FP_OPTIONS = {"userInvocationTable": {"resolve": {"fn": _fp_resolve, "arity": {0: []}}},
               "returnRawData": True}


def _plain(value):
    if isinstance(value, ResourceNode):
        return _plain(value.data)
    if isinstance(value, FP_Quantity):
        return {"value": value.value, "code": str(value.unit).strip("'")}
    return str(value) if isinstance(value, FP_Type) else value


# fhirpathpy keeps evaluation state in module globals: one evaluation at a time.
_FALLBACK_LOCK = threading.Lock()


def _fallback(expression: str, base: str | None) -> Evaluator:
    compiled = fhirpathpy.compile(expression, _R4, options=_FP_OPTIONS)

    def run(node):
        if base:
            node = ResourceNode.create_node(node, base)
        with _FALLBACK_LOCK:
            results = compiled(node)
        return [v for v in map(_plain, results) if v is not None]
    return run


# ---------------------------------------------------------------------------- public API


def _compile_union(branches: list[str], ctx: str | None, rooted: bool, dedupe: bool):
    fns, fast = [], 0
    for branch in branches:
        try:
            fns.append(_fast(branch, ctx, rooted, distinct=dedupe and len(branches) == 1))
            fast += 1
        except _Unsupported:
            fns.append(_fallback(branch, None if rooted else ctx))
    if len(fns) == 1 and (fast or not dedupe):
        run = fns[0]
    elif len(fns) == 1:  # the one branch of a union that applies to this type
        only = fns[0]

        def run(node):
            found = only(node)
            return found if len(found) < 2 else _distinct(found)
    else:  # branches whose paths start at keys the node lacks are not called
        branches_roots = [(fn, getattr(fn, "roots", None)) for fn in fns]

        def run(node):
            keys = node.keys() if type(node) is dict else None
            return _distinct([value for fn, roots in branches_roots
                              if roots is None or keys is None or not keys.isdisjoint(roots)
                              for value in fn(node)])
    run.fast_path_branches, run.fallback_branches = fast, len(fns) - fast  # for tests/reports
    roots = [getattr(fn, "roots", None) for fn in fns]
    run.roots = None if None in roots else frozenset().union(*roots)
    return run


def _distinct(values: list) -> list:
    out = []
    for value in values:
        if value not in out:
            out.append(value)
    return out


def compile_expression(expression: str, resource_type: str) -> Evaluator | None:
    """Compile the branches of `expression` that apply to `resource_type` (see module doc).

    The returned function takes the resource as a JSON dict and returns the matched nodes (it
    does not check ``resourceType``). Returns None if no branch of the union applies.
    """
    branches = [_strip_parens(b) for b in _split_top(expression or "", "|")]
    kept = []
    for branch in branches:
        root = _NAME.match(branch.lstrip("( "))
        root = root[1] if root else ""
        if root in ("Resource", "DomainResource"):  # fhirpathpy matches only the concrete type
            kept.append(re.sub(rf"^(\(*\s*){root}\b", rf"\g<1>{resource_type}", branch))
        elif root == resource_type or root[:1].islower():
            kept.append(branch)
    return _compile_union(kept, resource_type, True, len(branches) > 1) if kept else None


def compile_relative(expression: str, element_type: str | None = None) -> Evaluator:
    """Compile a composite component expression (``code``, ``value.as(Quantity)``...) that is
    evaluated on an element dict. `element_type` (a model type or backbone path, e.g.
    ``UsageContext`` or ``Group.characteristic``) is optional and sharpens choice handling."""
    branches = [_strip_parens(b) for b in _split_top(expression, "|")]
    return _compile_union(branches, element_type, False, len(branches) > 1)
