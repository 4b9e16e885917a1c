"""FHIR XML <-> FHIR JSON conversion.

The server keeps resources as plain FHIR JSON dicts; this module translates them to and from the
FHIR XML wire format (https://hl7.org/fhir/R4/xml.html):

* namespace ``http://hl7.org/fhir``; the root element is named after the resource type;
* primitives are ``<name value="..."/>``; an element ``id`` and primitive extensions live on the
  element (in JSON they sit in the ``_name`` companion, null-aligned for arrays);
* ``Element.id`` and ``Extension.url`` are XML attributes;
* resources inside ``contained``, ``Bundle.entry.resource``, ``Parameters.parameter.resource``
  (every element of type Resource) are wrapped in an element named after their type;
* ``Narrative.div`` is XHTML in XML and a string in JSON;
* XML element order follows the FHIR definition order.

Element order, cardinality and JSON types come from the metadata of the installed
``fhir.resources`` R4B models (``elements_sequence()`` and the pydantic field annotations). The
models are never instantiated or validated here; per-type metadata is computed once and cached.

Parsing is hardened: lxml with ``resolve_entities=False``, ``no_network=True``, ``load_dtd=False``
and ``huge_tree=False``; any DOCTYPE, any processing instruction and nesting deeper than
``MAX_DEPTH`` are refused with ``ValueError``.

Decimals are returned as ``int`` (no fraction or exponent in the text) or ``float``, exactly what
``orjson.loads`` gives for the same JSON number, so trailing zeros ("1.50") are not kept.
"""

from __future__ import annotations

import codecs
import copy
import math
import re
import threading
import types
import typing
from decimal import Decimal
from html.entities import name2codepoint
from typing import Any

from lxml import etree

_SubElement = etree.SubElement

__all__ = ["FHIR_NS", "MAX_DEPTH", "XHTML_NS", "json_to_xml", "safe_parse", "warm_up", "xml_to_json"]

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
MAX_DEPTH = 100

_F = "{" + FHIR_NS + "}"
_FLEN = len(_F)
_DIV_TAG = "{" + XHTML_NS + "}div"
_EXTENSION_TAG = _F + "extension"

# element kinds
_PRIM = 0  # primitive: <x value=".."/>, JSON scalar + "_x" companion
_COMPLEX = 1  # data type / backbone element
_RESOURCE = 2  # element of type Resource: wrapper element around a resource
_XHTML = 3  # Narrative.div
_ATTR = 4  # Element.id / Extension.url: XML attribute

# JSON value types of primitives
_J_STR = 0
_J_BOOL = 1
_J_INT = 2
_J_DEC = 3

_INT_PRIMS = {"integer", "unsignedInt", "positiveInt"}

_INT_RE = re.compile(r"-?(?:0|[1-9][0-9]*)\Z")
_DEC_RE = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?\Z")
_DOCTYPE_RE = re.compile(rb"<!\s*DOCTYPE", re.IGNORECASE)
_DOCTYPE_STR_RE = re.compile(r"<!\s*DOCTYPE", re.IGNORECASE)
_XML_DECL_RE = re.compile(r"\A\s*<\?xml[^>]*\?>")


# --------------------------------------------------------------------------------------------
# metadata from fhir.resources R4B models
# --------------------------------------------------------------------------------------------


class _Elem:
    __slots__ = ("index", "is_list", "jtype", "kind", "model", "name", "tag")

    def __init__(self, name: str, kind: int, is_list: bool, jtype: int, model: Any, index: int):
        self.name = name
        self.kind = kind
        self.is_list = is_list
        self.jtype = jtype
        self.model = model  # model class for _COMPLEX
        self.index = index
        self.tag = _F + name


class _Meta:
    __slots__ = ("attrs", "elems", "is_resource", "name")

    def __init__(self, name: str, is_resource: bool, elems: dict[str, _Elem]):
        self.name = name
        self.is_resource = is_resource
        self.elems = elems
        # XML attributes in FHIR order (id before url)
        self.attrs = tuple(e.name for e in elems.values() if e.kind == _ATTR)


_meta_cache: dict[type, _Meta] = {}
_meta_lock = threading.Lock()


def _models():
    from fhir.resources.R4B import get_fhir_model_class
    from fhir.resources.R4B.resource import Resource

    return get_fhir_model_class, Resource


def _unwrap(ann: Any) -> tuple[bool, Any]:
    is_list = False
    while True:
        origin = typing.get_origin(ann)
        if origin is typing.Union or origin is types.UnionType:
            args = [a for a in typing.get_args(ann) if a is not type(None)]
            if len(args) != 1:
                raise TypeError(f"unsupported annotation {ann!r}")
            ann = args[0]
            continue
        if origin is list:
            is_list = True
            ann = typing.get_args(ann)[0]
            continue
        return is_list, ann


def _classify(ann: Any) -> tuple[int, int, Any]:
    """(kind, json type, model class) for an unwrapped field annotation."""
    from fhir_core.types import FhirBase

    if ann is bool:
        return _PRIM, _J_BOOL, None
    if isinstance(ann, type) and issubclass(ann, FhirBase):
        model = ann.get_model_klass()
        if model.__name__ == "Resource":
            return _RESOURCE, _J_STR, None
        return _COMPLEX, _J_STR, model
    if typing.get_origin(ann) is typing.Annotated:
        for meta in typing.get_args(ann)[1:]:
            visit = getattr(meta, "__visit_name__", None)
            if visit is None:
                continue
            if visit == "xhtml":
                return _XHTML, _J_STR, None
            if visit == "decimal":
                return _PRIM, _J_DEC, None
            if visit in _INT_PRIMS:
                return _PRIM, _J_INT, None
            return _PRIM, _J_STR, None
        # e.g. uuid: Annotated[UUID, UuidVersion(4)]
        return _PRIM, _J_STR, None
    raise TypeError(f"unsupported annotation {ann!r}")


def _build_meta(cls: type) -> _Meta:
    _, resource_base = _models()
    is_resource = issubclass(cls, resource_base)
    by_alias = {(f.alias or k): f for k, f in cls.model_fields.items()}
    elems: dict[str, _Elem] = {}
    for index, name in enumerate(cls.elements_sequence()):
        field = by_alias[name]
        is_list, ann = _unwrap(field.annotation)
        kind, jtype, model = _classify(ann)
        if not is_resource and (name == "id" or (name == "url" and cls.__name__ == "Extension")):
            kind = _ATTR
        elems[name] = _Elem(name, kind, is_list, jtype, model, index)
    return _Meta(cls.__name__, is_resource, elems)


def _meta_for(cls: type) -> _Meta:
    meta = _meta_cache.get(cls)
    if meta is None:
        with _meta_lock:
            meta = _meta_cache.get(cls)
            if meta is None:
                meta = _build_meta(cls)
                _meta_cache[cls] = meta
    return meta


_resource_meta_cache: dict[str, _Meta] = {}


def _resource_meta(name: Any) -> _Meta:
    meta = _resource_meta_cache.get(name) if isinstance(name, str) else None
    if meta is not None:
        return meta
    if not isinstance(name, str) or not name:
        raise ValueError(f"Invalid resourceType {name!r}")
    get_model, resource_base = _models()
    try:
        cls = get_model(name)
    except (ValueError, AttributeError, TypeError):
        cls = None
    if (
        cls is None
        or not isinstance(cls, type)
        or not issubclass(cls, resource_base)
        or getattr(cls, "__resource_type__", None) != name
        or name in ("Resource", "DomainResource")
    ):
        raise ValueError(f"Unknown FHIR resource type {name!r}")
    meta = _meta_for(cls)
    _resource_meta_cache[name] = meta
    return meta


def warm_up(resource_types: typing.Iterable[str] = ()) -> None:
    """Import the R4B models and build the metadata of the given resource types (and of every
    data type and backbone element they use) now, instead of on the first request."""
    _meta_for(_extension_cls())
    pending = [_resource_meta(name) for name in resource_types]
    done: set[int] = set()
    while pending:
        meta = pending.pop()
        if id(meta) in done:
            continue
        done.add(id(meta))
        pending.extend(_meta_for(e.model) for e in meta.elems.values() if e.kind == _COMPLEX)


# --------------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------------

_local = threading.local()


def _parser() -> etree.XMLParser:
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_pis=False,
            strip_cdata=True,
        )
        _local.parser = parser
    return parser


# (byte signature, Python codec) of the encodings that are not ASCII-compatible but that XML
# parsers detect by themselves; the document is decoded here to look for a DOCTYPE.
_WIDE_SIGNATURES = (
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00<\x00?", "utf-16-be"),
    (b"<\x00?\x00", "utf-16-le"),
)
_ENCODING_DECL_RE = re.compile(
    rb"\s*<\?xml\s[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._:-]{1,40})[\"']"
)
_ASCII_PROBE = "<?xml!DOCTYPE[]&;%'\"=>/ abcxyzABCXYZ0123456789"


def _precheck(data: bytes, what: str) -> None:
    """Refuse DOCTYPEs before libxml2 sees them, whatever the document's encoding."""
    for signature, codec in _WIDE_SIGNATURES:
        if data.startswith(signature):
            try:
                text = data.decode(codec)
            except UnicodeError as exc:
                raise ValueError(f"{what}: cannot decode the document as {codec}: {exc}") from None
            if _DOCTYPE_STR_RE.search(text):
                raise ValueError(f"{what}: DOCTYPE declarations are not allowed")
            return
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    if not body.lstrip().startswith(b"<"):
        raise ValueError(f"{what}: malformed XML: the document does not start with '<'")
    match = _ENCODING_DECL_RE.match(body)
    if match:
        name = match.group(1).decode("ascii")
        try:
            codec = codecs.lookup(name)
            ascii_compatible = (
                _ASCII_PROBE.encode(codec.name) == _ASCII_PROBE.encode("ascii")
                and b"+ADw-".decode(codec.name) == "+ADw-"  # UTF-7 spells '<' so
            )
        except (LookupError, UnicodeError, ValueError):
            raise ValueError(f"{what}: unsupported encoding {name!r}") from None
        if not ascii_compatible:
            raise ValueError(f"{what}: unsupported encoding {name!r}")
    # every ASCII-compatible encoding writes '<!DOCTYPE' as these very bytes
    if _DOCTYPE_RE.search(data):
        raise ValueError(f"{what}: DOCTYPE declarations are not allowed")


def safe_parse(data: bytes | bytearray | memoryview | str, what: str) -> etree._Element:
    """Parse untrusted XML: no DOCTYPE, entities, DTD or network; ValueError naming ``what``."""
    if isinstance(data, str):
        if _DOCTYPE_STR_RE.search(data):
            raise ValueError(f"{what}: DOCTYPE declarations are not allowed")
        # an encoding declaration in an already decoded string is meaningless: drop it
        data = _XML_DECL_RE.sub("", data, count=1).encode("utf-8")
    elif isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    elif not isinstance(data, bytes):
        raise ValueError(f"{what}: expected bytes, got {type(data).__name__}")  # noqa: TRY004
    if not data.strip():
        raise ValueError(f"{what}: the document is empty")
    _precheck(data, what)
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"{what}: malformed XML: {exc}") from None
    except (LookupError, UnicodeError) as exc:  # unknown / bad encoding
        raise ValueError(f"{what}: cannot decode the document: {exc}") from None
    if root is None:
        raise ValueError(f"{what}: the document has no root element")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise ValueError(f"{what}: DOCTYPE declarations are not allowed")
    for sibling in (*root.itersiblings(preceding=True), *root.itersiblings()):
        if sibling.tag is not etree.Comment:
            raise ValueError(f"{what}: processing instructions are not allowed")
    for _ in root.iter(etree.ProcessingInstruction):
        raise ValueError(f"{what}: processing instructions are not allowed")
    for _ in root.iter(etree.Entity):
        raise ValueError(f"{what}: entity references are not allowed")
    return root


# --------------------------------------------------------------------------------------------
# XML -> JSON
# --------------------------------------------------------------------------------------------


def xml_to_json(data: bytes) -> dict:
    """Parse a FHIR XML resource (any resource type, including Bundles with nested resources and
    contained resources) into FHIR JSON. Raises ValueError with a clear English message on
    malformed XML, a wrong namespace, or a forbidden construct."""
    root = safe_parse(data, "Invalid FHIR XML")
    tag = root.tag
    if not tag.startswith(_F):
        ns = tag[1:].split("}", 1)[0] if tag.startswith("{") else ""
        raise ValueError(
            f"Invalid FHIR XML: the root element must be in namespace {FHIR_NS!r}, found {ns!r}"
            if ns
            else f"Invalid FHIR XML: the root element must be in namespace {FHIR_NS!r} "
            f'(missing xmlns="{FHIR_NS}")'
        )
    return _parse_resource(root, 1)


def _where(el: etree._Element) -> str:
    line = getattr(el, "sourceline", None)
    return f" (line {line})" if line else ""


def _check_text(text: str | None, el: etree._Element, path: str) -> None:
    if text and not text.isspace():
        raise ValueError(f"Invalid FHIR XML: text content is not allowed in {path}{_where(el)}")


def _parse_resource(el: etree._Element, depth: int) -> dict:
    if depth > MAX_DEPTH:
        raise ValueError(f"Invalid FHIR XML: nesting deeper than {MAX_DEPTH} levels")
    name = el.tag[_FLEN:]
    try:
        meta = _resource_meta(name)
    except ValueError:
        raise ValueError(f"Invalid FHIR XML: unknown resource type {name!r}{_where(el)}") from None
    for key in el.attrib:
        if not key.startswith("{"):
            raise ValueError(
                f"Invalid FHIR XML: attribute {key!r} is not allowed on resource {name}{_where(el)}"
            )
    out: dict[str, Any] = {"resourceType": name}
    _parse_children(el, meta, out, depth, name)
    return out


def _parse_complex(el: etree._Element, meta: _Meta, depth: int, path: str) -> dict:
    if depth > MAX_DEPTH:
        raise ValueError(f"Invalid FHIR XML: nesting deeper than {MAX_DEPTH} levels")
    out: dict[str, Any] = {}
    attrib = el.attrib
    if attrib:
        for key in attrib:
            if key in meta.attrs:
                continue
            if key.startswith("{"):
                continue  # foreign namespace (xsi:..., xml:...) - not FHIR content
            raise ValueError(
                f"Invalid FHIR XML: attribute {key!r} is not allowed on {path}{_where(el)}"
            )
        for key in meta.attrs:
            value = attrib.get(key)
            if value is not None:
                out[key] = value
    _parse_children(el, meta, out, depth, path)
    return out


def _parse_children(el: etree._Element, meta: _Meta, out: dict, depth: int, path: str) -> None:
    _check_text(el.text, el, path)
    elems = meta.elems
    prim_exts: dict[str, list] | None = None
    seen_single: set[str] = set()
    for child in el:
        tag = child.tag
        if not isinstance(tag, str):  # comment (PIs were refused up front)
            _check_text(child.tail, el, path)
            continue
        _check_text(child.tail, el, path)
        if tag.startswith(_F):
            name = tag[_FLEN:]
        elif tag == _DIV_TAG and "div" in elems:
            name = "div"
        else:
            raise ValueError(
                f"Invalid FHIR XML: element {tag!r} in {path} is not in the FHIR namespace"
                f"{_where(child)}"
            )
        e = elems.get(name)
        if e is None or e.kind == _ATTR:
            if e is not None:
                raise ValueError(
                    f"Invalid FHIR XML: {path}.{name} must be an XML attribute, not an element"
                    f"{_where(child)}"
                )
            raise ValueError(f"Invalid FHIR XML: unknown element {path}.{name}{_where(child)}")
        if not e.is_list:
            if name in seen_single:
                raise ValueError(
                    f"Invalid FHIR XML: element {path}.{name} may occur only once{_where(child)}"
                )
            seen_single.add(name)
        kind = e.kind
        if kind == _PRIM:
            value, ext = _parse_primitive(child, e, depth + 1, f"{path}.{name}")
            if e.is_list:
                values = out.get(name)
                if values is None:
                    values = out[name] = []
                    if prim_exts is None:
                        prim_exts = {}
                    prim_exts[name] = []
                values.append(value)
                prim_exts[name].append(ext)  # type: ignore[index]
            else:
                if value is not None:
                    out[name] = value
                if ext is not None:
                    out["_" + name] = ext
            continue
        if kind == _COMPLEX:
            value = _parse_complex(child, _meta_for(e.model), depth + 1, f"{path}.{name}")
        elif kind == _RESOURCE:
            value = _parse_wrapped(child, depth + 1, f"{path}.{name}")
        else:  # _XHTML
            value = _parse_div(child, f"{path}.{name}")
        if e.is_list:
            values = out.get(name)
            if values is None:
                out[name] = [value]
            else:
                values.append(value)
        else:
            out[name] = value
    if prim_exts:
        for name, exts in prim_exts.items():
            for ext in exts:
                if ext is not None:
                    out["_" + name] = exts
                    break


def _parse_primitive(el: etree._Element, e: _Elem, depth: int, path: str) -> tuple[Any, Any]:
    if depth > MAX_DEPTH:
        raise ValueError(f"Invalid FHIR XML: nesting deeper than {MAX_DEPTH} levels")
    raw = None
    ext: dict | None = None
    for key, value in el.attrib.items():
        if key == "value":
            raw = value
        elif key == "id":
            ext = {"id": value}
        elif key.startswith("{"):
            continue
        else:
            raise ValueError(
                f"Invalid FHIR XML: attribute {key!r} is not allowed on {path}{_where(el)}"
            )
    _check_text(el.text, el, path)
    if len(el):
        extensions = []
        ext_meta = None
        for child in el:
            tag = child.tag
            _check_text(child.tail, el, path)
            if not isinstance(tag, str):
                continue
            if tag != _EXTENSION_TAG:
                raise ValueError(
                    f"Invalid FHIR XML: element {tag.replace(_F, '')!r} is not allowed inside "
                    f"primitive {path} (only extension){_where(child)}"
                )
            if ext_meta is None:
                ext_meta = _meta_for(_extension_cls())
            extensions.append(_parse_complex(child, ext_meta, depth + 1, f"{path}.extension"))
        if extensions:
            if ext is None:
                ext = {}
            ext["extension"] = extensions
    if raw is None:
        if ext is None or "extension" not in ext:
            raise ValueError(
                f"Invalid FHIR XML: {path} has neither a value attribute nor extensions{_where(el)}"
            )
        return None, ext
    return _convert(raw, e.jtype, path, el), ext


_extension_model: Any = None


def _extension_cls() -> Any:
    global _extension_model
    if _extension_model is None:
        get_model, _ = _models()
        _extension_model = get_model("Extension")
    return _extension_model


def _convert(raw: str, jtype: int, path: str, el: etree._Element) -> Any:
    if jtype == _J_STR:
        return raw
    if jtype == _J_BOOL:
        if raw == "true":
            return True
        if raw == "false":
            return False
        raise ValueError(
            f"Invalid FHIR XML: {path} must be 'true' or 'false', got {raw!r}{_where(el)}"
        )
    if jtype == _J_INT:
        if not _INT_RE.match(raw):
            raise ValueError(
                f"Invalid FHIR XML: {path} must be an integer, got {raw!r}{_where(el)}"
            )
        return int(raw)
    if not _DEC_RE.match(raw):
        raise ValueError(f"Invalid FHIR XML: {path} must be a decimal, got {raw!r}{_where(el)}")
    if "." in raw or "e" in raw or "E" in raw:
        value = float(raw)
        if not math.isfinite(value):
            raise ValueError(f"Invalid FHIR XML: {path} is out of range: {raw!r}{_where(el)}")
        return value
    return int(raw)


def _parse_wrapped(el: etree._Element, depth: int, path: str) -> dict:
    for key in el.attrib:
        if not key.startswith("{"):
            raise ValueError(
                f"Invalid FHIR XML: attribute {key!r} is not allowed on {path}{_where(el)}"
            )
    _check_text(el.text, el, path)
    found = None
    for child in el:
        _check_text(child.tail, el, path)
        tag = child.tag
        if not isinstance(tag, str):
            continue
        if not tag.startswith(_F):
            raise ValueError(
                f"Invalid FHIR XML: element {tag!r} in {path} is not in the FHIR namespace"
                f"{_where(child)}"
            )
        if found is not None:
            raise ValueError(
                f"Invalid FHIR XML: {path} must contain exactly one resource{_where(child)}"
            )
        found = child
    if found is None:
        raise ValueError(f"Invalid FHIR XML: {path} must contain a resource{_where(el)}")
    return _parse_resource(found, depth + 1)


def _parse_div(el: etree._Element, path: str) -> str:
    if el.tag != _DIV_TAG:
        raise ValueError(
            f"Invalid FHIR XML: {path} must be an XHTML <div> in namespace {XHTML_NS!r}{_where(el)}"
        )
    nsmap = el.nsmap
    if len(nsmap) != 1 or nsmap.get(None) != XHTML_NS:
        # drop namespace declarations inherited from the FHIR document
        el = copy.deepcopy(el)
        etree.cleanup_namespaces(el)
    return etree.tostring(el, encoding="unicode", with_tail=False)


# --------------------------------------------------------------------------------------------
# JSON -> XML
# --------------------------------------------------------------------------------------------


def json_to_xml(resource: dict, pretty: bool = False) -> bytes:
    """Serialise FHIR JSON to FHIR XML (UTF-8, with XML declaration)."""
    if not isinstance(resource, dict):
        raise ValueError("Cannot serialise to FHIR XML: a resource must be a JSON object")  # noqa: TRY004
    rtype = resource.get("resourceType")
    if rtype is None:
        raise ValueError("Cannot serialise to FHIR XML: the resource has no resourceType")
    try:
        meta = _resource_meta(rtype)
    except ValueError as exc:
        raise ValueError(f"Cannot serialise to FHIR XML: {exc}") from None
    root = etree.Element(_F + rtype, nsmap={None: FHIR_NS})
    _emit_children(root, resource, meta, 1, rtype)
    if pretty:
        _indent(root, 0)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _err(path: str, msg: str) -> ValueError:
    return ValueError(f"Cannot serialise to FHIR XML: {path}: {msg}")


def _emit_resource(parent: etree._Element, res: Any, depth: int, path: str) -> None:
    if depth > MAX_DEPTH:
        raise _err(path, f"nesting deeper than {MAX_DEPTH} levels")
    if not isinstance(res, dict):
        raise _err(path, "a resource must be a JSON object")
    rtype = res.get("resourceType")
    if rtype is None:
        raise _err(path, "the resource has no resourceType")
    try:
        meta = _resource_meta(rtype)
    except ValueError as exc:
        raise _err(path, str(exc)) from None
    el = etree.SubElement(parent, _F + rtype)
    _emit_children(el, res, meta, depth, f"{path}.{rtype}")


def _emit_children(el: etree._Element, obj: dict, meta: _Meta, depth: int, path: str) -> None:
    if depth > MAX_DEPTH:
        raise _err(path, f"nesting deeper than {MAX_DEPTH} levels")
    elems = meta.elems
    todo: list[_Elem] = []
    seen: set[str] = set()
    for key in obj:
        if key == "resourceType" and meta.is_resource:
            continue
        if not isinstance(key, str):
            raise _err(path, f"property names must be strings, got {key!r}")
        if key.startswith("_"):
            name = key[1:]
            e = elems.get(name)
            if e is None:
                raise _err(path, f"unknown element {key!r} in {meta.name}")
            if e.kind != _PRIM:
                raise _err(path, f"{key!r} is only allowed for primitive elements")
        else:
            name = key
            e = elems.get(name)
            if e is None:
                raise _err(path, f"unknown element {key!r} in {meta.name}")
        if name not in seen:
            seen.add(name)
            todo.append(e)
    if len(todo) > 1:
        todo.sort(key=_index)
    for e in todo:
        name = e.name
        value = obj.get(name)
        kind = e.kind
        if kind == _PRIM:
            ext = obj.get("_" + name)
            if e.is_list:
                _emit_prim_list(el, e, value, ext, depth, f"{path}.{name}")
            else:
                _emit_prim(el, e, value, ext, depth, f"{path}.{name}")
            continue
        if value is None:
            continue
        if kind == _ATTR:
            if not isinstance(value, str):
                raise _err(f"{path}.{name}", "must be a string")
            el.set(name, value)
            continue
        if e.is_list:
            if not isinstance(value, list):
                raise _err(f"{path}.{name}", "must be a JSON array")
            items = value
        else:
            if isinstance(value, list):
                raise _err(f"{path}.{name}", "must not be an array")
            items = (value,)
        if kind == _COMPLEX:
            sub = _meta_for(e.model)
            tag = e.tag
            for item in items:
                if not isinstance(item, dict):
                    raise _err(f"{path}.{name}", "must be a JSON object")
                _emit_children(_SubElement(el, tag), item, sub, depth + 1, f"{path}.{name}")
        elif kind == _RESOURCE:
            for item in items:
                wrapper = _SubElement(el, e.tag)
                _emit_resource(wrapper, item, depth + 2, f"{path}.{name}")
        else:  # _XHTML
            for item in items:
                el.append(_div_from_string(item, f"{path}.{name}"))


def _index(e: _Elem) -> int:
    return e.index


def _emit_prim_list(
    el: etree._Element, e: _Elem, values: Any, exts: Any, depth: int, path: str
) -> None:
    if values is None:
        if exts is None:
            return
        if not isinstance(exts, list):
            raise _err("_" + path, "must be a JSON array")
        values = [None] * len(exts)
    elif not isinstance(values, list):
        raise _err(path, "must be a JSON array")
    if exts is None:
        for value in values:
            _emit_prim(el, e, value, None, depth, path)
        return
    if not isinstance(exts, list):
        raise _err("_" + path, "must be a JSON array")
    if len(exts) != len(values):
        raise _err(path, f"the value array and the _{e.name} array differ in length")
    for value, ext in zip(values, exts, strict=True):
        _emit_prim(el, e, value, ext, depth, path)


def _emit_prim(el: etree._Element, e: _Elem, value: Any, ext: Any, depth: int, path: str) -> None:
    if ext is None:
        if value is not None:
            _SubElement(el, e.tag, value=_to_text(value, e.jtype, path))
        return
    if not isinstance(ext, dict):
        raise _err(path, f"_{e.name} must be a JSON object")
    for key in ext:
        if key not in ("id", "extension"):
            raise _err(path, f"unknown property {key!r} in _{e.name}")
    child = _SubElement(el, e.tag)
    ext_id = ext.get("id")
    if ext_id is not None:
        if not isinstance(ext_id, str):
            raise _err(path, "element id must be a string")
        child.set("id", ext_id)
    if value is not None:
        child.set("value", _to_text(value, e.jtype, path))
    extensions = ext.get("extension")
    if extensions is None:
        return
    if not isinstance(extensions, list):
        raise _err(path, "extension must be a JSON array")
    meta = _meta_for(_extension_cls())
    for item in extensions:
        if not isinstance(item, dict):
            raise _err(path, "an extension must be a JSON object")
        _emit_children(
            _SubElement(child, _EXTENSION_TAG), item, meta, depth + 1, f"{path}.extension"
        )


def _to_text(value: Any, jtype: int, path: str) -> str:
    if jtype == _J_STR:
        if isinstance(value, str):
            return value
        raise _err(path, f"expected a string, got {type(value).__name__}")
    if jtype == _J_BOOL:
        if value is True:
            return "true"
        if value is False:
            return "false"
        raise _err(path, f"expected a boolean, got {type(value).__name__}")
    if isinstance(value, bool):
        raise _err(path, "expected a number, got a boolean")
    if isinstance(value, int):
        return str(value)
    if jtype == _J_INT:
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        raise _err(path, f"expected an integer, got {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _err(path, f"{value!r} is not a valid decimal")
        return repr(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise _err(path, f"{value!r} is not a valid decimal")
        return str(value)
    raise _err(path, f"expected a number, got {type(value).__name__}")


def _div_from_string(value: Any, path: str) -> etree._Element:
    if not isinstance(value, str):
        raise _err(path, "the narrative div must be a string")
    try:
        div = safe_parse(value.encode("utf-8"), "narrative div")
    except ValueError as exc:
        # tolerate HTML named entities (&nbsp; ...) in stored narratives: XML knows only five
        fixed = _HTML_ENTITY_RE.sub(_html_entity_to_ref, value)
        if fixed == value:
            raise _err(path, f"the narrative div is not well-formed XHTML: {exc}") from None
        try:
            div = safe_parse(fixed.encode("utf-8"), "narrative div")
        except ValueError as exc2:
            raise _err(path, f"the narrative div is not well-formed XHTML: {exc2}") from None
    if div.tag != _DIV_TAG:
        raise _err(path, f'the narrative must be a <div xmlns="{XHTML_NS}"> element')
    return div


_HTML_ENTITY_RE = re.compile(r"&([A-Za-z][A-Za-z0-9]*);")
_XML_ENTITIES = {"amp", "lt", "gt", "quot", "apos"}


def _html_entity_to_ref(match: re.Match) -> str:
    name = match.group(1)
    if name in _XML_ENTITIES:
        return match.group(0)
    codepoint = name2codepoint.get(name)
    return f"&#{codepoint};" if codepoint is not None else match.group(0)


def _indent(el: etree._Element, level: int) -> None:
    """Pretty-print FHIR elements only; the content of the XHTML div is left untouched."""
    if not len(el):
        return
    pad = "\n" + "  " * (level + 1)
    el.text = pad
    last = None
    for child in el:
        child.tail = pad
        tag = child.tag
        if isinstance(tag, str) and tag.startswith(_F):
            _indent(child, level + 1)
        last = child
    if last is not None:
        last.tail = "\n" + "  " * level
