"""FHIRPath evaluation for search-parameter indexing.

``compile_expression(expression, resource_type)`` splits a SearchParameter expression into its
top-level union branches and keeps those that apply to ``resource_type`` (rooted at that type,
at ``Resource``/``DomainResource``, or a bare relative path such as ``id``). Each branch is
compiled once, at compile time, into one of two forms:

* **Fast path** -- a tuple of small closures that walk the plain JSON dict directly. It covers
  the forms used by the official SearchParameters: dotted paths (lists flattened at every step),
  ``[n]`` indexers, choice elements (``value.as(Quantity)``, ``(value as Quantity)``,
  ``value.ofType(Quantity)`` -> ``valueQuantity``; a bare ``effective`` -> every
  ``effectiveXxx`` key the R4 model allows), ``where(resolve() is T)``,
  ``where(field = 'literal')`` and ``extension('url')``. Element types are tracked at compile
  time with fhirpathpy's R4 model, so no parsing happens at evaluation time.
* **Fallback** -- anything else (e.g. ``Patient.deceased.exists() and Patient.deceased != false``)
  is compiled with ``fhirpathpy`` and its results are turned back into plain JSON values.

``resolve()`` cannot fetch anything here; both paths apply the same rule instead: a reference
"resolves" to the type named by its literal ``reference`` (``Patient/1``,
``http://host/fhir/Patient/1/_history/2``), else to its ``type`` element. ``urn:uuid:`` and
``#contained`` references without ``type`` resolve to nothing.

Results are the original JSON objects (dicts for complex elements, str/bool/int/float for
primitives): treat them as read-only. A union (``a | b``) removes duplicates, as FHIRPath does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal

import fhirpathpy
from fhirpathpy.engine.nodes import FP_Quantity, FP_Type, ResourceNode
from fhirpathpy.models import models

__all__ = ["compile_expression", "compile_relative", "reference_type"]

_R4 = models["r4"]
_PATH2TYPE: dict[str, str] = _R4["path2Type"]
_CHOICES: dict[str, list[str]] = _R4["choiceTypePaths"]
_ELSEWHERE: dict[str, str] = _R4["pathsDefinedElsewhere"]
_PARENT: dict[str, str] = _R4["type2Parent"]
# Backbone elements have no entry of their own in path2Type, only their children do.
_BACKBONES = {p.rsplit(".", i)[0] for p in (*_PATH2TYPE, *_CHOICES) for i in range(1, p.count("."))}

Evaluator = Callable[[dict], list]


class _Unsupported(Exception):
    """The fast path cannot compile this branch: use fhirpathpy."""


# ---------------------------------------------------------------------------- resolve() rule

def reference_type(ref: object) -> str | None:
    """The resource type a Reference dict points at, per the rule in the module docstring."""
    if type(ref) is not dict:
        return None
    literal = ref.get("reference")
    if type(literal) is str:
        cut = literal.find("/_history/")
        parts = (literal if cut < 0 else literal[:cut]).split("/")
        if len(parts) >= 2 and parts[-1] and parts[-2][:1].isupper():
            return parts[-2]
    kind = ref.get("type")
    return kind if type(kind) is str else None


def _fp_resolve(inputs: list) -> list:
    """fhirpathpy user function: a typed stub per reference, so `resolve() is T` works."""
    stubs = []
    for ref in inputs:
        kind = reference_type(ref)
        if kind:
            stubs.append(ResourceNode.create_node({"resourceType": kind}))
    return stubs


_FP_OPTIONS = {"userInvocationTable": {"resolve": {"fn": _fp_resolve, "arity": {0: []}}},
               "returnRawData": True}

# ---------------------------------------------------------------------------- text helpers


def _split_top(text: str, sep: str) -> list[str]:
    """Split on `sep` outside parentheses, brackets and quoted strings."""
    parts, depth, quote, start, i = [], 0, False, 0, 0
    while i < len(text):
        ch = text[i]
        if quote:
            quote = ch != "'" if text[i - 1] != "\\" else True
        elif ch == "'":
            quote = True
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i])
            start = i = i + len(sep)
            continue
        i += 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _strip_parens(text: str) -> str:
    text = text.strip()
    while text.startswith("(") and text.endswith(")") and len(_split_top(text[1:-1], ")")) == 1:
        text = text[1:-1].strip()
    return text


_NAME = re.compile(r"([A-Za-z_]\w*)(?:\[(\d+)\])?")
_CALL = re.compile(r"(\w+)\((.*)\)", re.S)
_TYPE = re.compile(r"(?:FHIR\.)?([A-Za-z]\w*)")
_WHERE_REF = re.compile(r"resolve\(\)\s+is\s+(?:FHIR\.)?([A-Z]\w*)")
_WHERE_EQ = re.compile(r"([a-z]\w*)\s*=\s*'([^'\\]*)'")
_QUOTED = re.compile(r"'([^'\\]*)'")

# ---------------------------------------------------------------------------- model helpers


def _canon(name: str) -> str:
    """Model choice lists spell primitives `DateTime`; type names are `dateTime`."""
    low = name[:1].lower() + name[1:]
    return low if name not in _PARENT and low in _PARENT else name


def _is_a(type_name: str, ancestor: str) -> bool:
    type_name, ancestor = _canon(type_name), _canon(ancestor)
    while type_name and type_name != ancestor:
        type_name = _PARENT.get(type_name)
    return type_name == ancestor


def _element(ctx: str | None, name: str) -> tuple[str | None, list[str] | None]:
    """(type or backbone path, choice types) of element `name` of `ctx`; (None, None) if the
    model does not know it."""
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
    return bool(ctx) and (ctx.startswith("System.") or ctx[0].islower())

# ---------------------------------------------------------------------------- fast-path steps


def _add(out: list, value) -> None:
    if type(value) is list:
        out.extend(value if None not in value else [v for v in value if v is not None])
    elif value is not None:
        out.append(value)


def _member(keys: tuple[str, ...]):
    if len(keys) == 1:
        key = keys[0]

        def step(coll):
            out = []
            for node in coll:
                if type(node) is dict and key in node:
                    _add(out, node[key])
            return out
        return step

    def step_choice(coll):
        out = []
        for node in coll:
            if type(node) is dict:
                for key in keys:
                    if key in node:
                        _add(out, node[key])
        return out
    return step_choice


def _member_untyped(name: str):
    """Element of unknown type: the key itself, else any `name` + uppercase-type choice key."""
    size = len(name)

    def step(coll):
        out = []
        for node in coll:
            if type(node) is dict:
                if name in node:
                    _add(out, node[name])
                    continue
                for key, value in node.items():
                    if len(key) > size and key.startswith(name) and key[size].isupper():
                        _add(out, value)
        return out
    return step


def _index(i: int):
    return lambda coll: coll[i:i + 1]


def _where_ref(kind: str):
    return lambda coll: [n for n in coll if reference_type(n) == kind]


def _where_eq(field: str, literal: str):
    def step(coll):
        out = []
        for node in coll:
            if type(node) is dict:
                value = node.get(field)
                if type(value) is list and len(value) == 1:
                    value = value[0]
                if value == literal:
                    out.append(node)
        return out
    return step


def _extension(url: str):
    def step(coll):
        out = []
        for node in coll:
            if type(node) is dict:
                for ext in node.get("extension", ()):
                    if type(ext) is dict and ext.get("url") == url:
                        out.append(ext)
        return out
    return step


def _compile_steps(path: str, ctx: str | None, rooted: bool) -> list:
    """Steps for a dotted path; `ctx` is the current element's type or backbone path."""
    tokens = _split_top(path, ".")
    if rooted and tokens[0][:1].isupper():
        tokens = tokens[1:]  # the root type name selects the resource itself
    steps: list = []
    choice: list[str] | None = None  # choice types of the element the previous step selected
    prev = None  # _NAME match of the previous token
    for token in tokens:
        name, call = _NAME.fullmatch(token), _CALL.fullmatch(token)
        if name:
            ctx, choice = _element(ctx, name[1])
            if ctx is None:
                steps.append(_member_untyped(name[1]))
            else:
                steps.append(_member(tuple(name[1] + t for t in choice) if choice else (name[1],)))
            if choice:
                ctx = None
            if name[2] is not None:
                steps.append(_index(int(name[2])))
        elif not call or len(_split_top(call[2], ")")) > 1:  # not a single balanced call
            raise _Unsupported(token)
        elif call[1] in ("as", "ofType") and _TYPE.fullmatch(call[2].strip()):
            wanted = _TYPE.fullmatch(call[2].strip())[1]
            if not prev or prev[2] is not None:
                raise _Unsupported(token)
            if choice:
                keys = tuple(prev[1] + t for t in choice if _is_a(t, wanted))
                steps[-1] = _member(keys) if keys else (lambda coll: [])
            elif ctx is None:  # type unknown: assume a choice element (`value.as(Quantity)`)
                steps[-1] = _member((prev[1] + wanted[:1].upper() + wanted[1:],))
            elif not _is_a(ctx, wanted):
                raise _Unsupported(token)
            ctx, choice = _canon(wanted), None
        elif call[1] == "where" and _WHERE_REF.fullmatch(call[2].strip()):
            steps.append(_where_ref(_WHERE_REF.fullmatch(call[2].strip())[1]))
        elif call[1] == "where" and _WHERE_EQ.fullmatch(call[2].strip()):
            steps.append(_where_eq(*_WHERE_EQ.fullmatch(call[2].strip()).groups()))
        elif call[1] == "extension" and _QUOTED.fullmatch(call[2].strip()):
            if _is_primitive(ctx):  # primitive extensions live under `_name`
                raise _Unsupported(token)
            steps.append(_extension(_QUOTED.fullmatch(call[2].strip())[1]))
            ctx, choice = "Extension", None
        else:
            raise _Unsupported(token)
        prev = name
    return steps


def _as_to_call(text: str) -> str:
    """`x as T` -> `x.as(T)`; also `(x as T).rest` -> `x.as(T).rest`."""
    head, rest = text, ""
    if text.startswith("(") and not text.endswith(")"):
        inner = _split_top(text[1:], ")")
        head, rest = inner[0], ")".join(inner[1:])
        if len(inner) != 2 or not rest.startswith("."):
            raise _Unsupported(text)
    parts = _split_top(head, " as ")
    if len(parts) == 2 and _TYPE.fullmatch(parts[1]):
        return f"{_strip_parens(parts[0])}.as({parts[1]}){rest}"
    if len(parts) > 2 or rest:
        raise _Unsupported(text)
    return text


def _fast(branch: str, ctx: str | None, rooted: bool) -> Evaluator:
    branch = _as_to_call(branch)
    steps = tuple(_compile_steps(branch, ctx, rooted))
    if not steps:
        return lambda node: [node]
    if len(steps) == 1:
        only = steps[0]
        return lambda node: only([node])

    def run(node):
        coll = [node]
        for step in steps:
            coll = step(coll)
            if not coll:
                break
        return coll
    return run

# ---------------------------------------------------------------------------- fallback


def _plain(value):
    if isinstance(value, ResourceNode):
        return _plain(value.data)
    if isinstance(value, FP_Quantity):
        return {"value": value.value, "code": str(value.unit).strip("'")}
    if isinstance(value, FP_Type):
        return str(value)
    return value


def _fallback(expression: str, base: str | None) -> Evaluator:
    compiled = fhirpathpy.compile(expression, _R4, options=_FP_OPTIONS)

    def run(node):
        if base:
            node = ResourceNode.create_node(node, base)
        return [v for v in map(_plain, compiled(node)) if v is not None]
    return run

# ---------------------------------------------------------------------------- public API


def _compile_branch(branch: str, ctx: str | None, rooted: bool) -> tuple[Evaluator, bool]:
    """(evaluator, True if fast-pathed) for one union branch."""
    try:
        return _fast(branch, ctx, rooted), True
    except _Unsupported:
        return _fallback(branch, None if rooted else ctx), False


def _union(fns: list[Evaluator], fast: list[bool], dedupe: bool) -> Evaluator:
    if len(fns) == 1 and not dedupe:
        run = fns[0]
    else:
        def run(node):
            out = []
            for fn in fns:
                for value in fn(node):
                    if value not in out:
                        out.append(value)
            return out
    run.fast_path_branches = sum(fast)  # introspection for tests and the coverage report
    run.fallback_branches = len(fast) - sum(fast)
    return run


def compile_expression(expression: str, resource_type: str) -> Evaluator | None:
    """Compile the branches of `expression` that apply to `resource_type` (see module doc).

    The returned function takes the resource as a JSON dict and returns the matched nodes; it
    does not check ``resourceType``. Returns None if no branch of the union applies.
    """
    branches = [_strip_parens(b) for b in _split_top(expression or "", "|")]
    compiled = []
    for branch in branches:
        root = _NAME.match(branch.lstrip("( "))
        root = root[1] if root else ""
        if root in ("Resource", "DomainResource"):  # fhirpathpy only matches the concrete type
            branch = re.sub(rf"^(\(*\s*){root}\b", rf"\g<1>{resource_type}", branch)
        elif root != resource_type and not root[:1].islower():
            continue
        compiled.append(_compile_branch(branch, resource_type, True))
    if not compiled:
        return None
    return _union([fn for fn, _ in compiled], [ok for _, ok in compiled], len(branches) > 1)


def compile_relative(expression: str, element_type: str | None = None) -> Evaluator:
    """Compile a composite component expression (``code``, ``value.as(Quantity)``...) that is
    evaluated on an element dict. `element_type` (a model type or backbone path, e.g.
    ``UsageContext`` or ``Group.characteristic``) is optional and sharpens choice handling."""
    branches = [_strip_parens(b) for b in _split_top(expression, "|")]
    compiled = [_compile_branch(b, element_type, False) for b in branches]
    return _union([fn for fn, _ in compiled], [ok for _, ok in compiled], len(branches) > 1)
