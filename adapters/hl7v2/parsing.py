"""One parsed message, the same whichever library parsed it, and the two parsers behind it.

``V2Message`` is a list of ``Segment``; a segment's field is a list of repetitions, a
repetition a list of components, a component a list of sub-components (unescaped strings).
Positions are 1-based as in the standard: ``pid.get(5, 2)`` is PID-5.2 (given name), and for
MSH, ``msh.get(9, 1)`` is MSH-9.1 (MSH-1 is the field separator).

Parsers (``PARSERS``), selected with ``parser_named``:

``split`` (the default, the hot path)
    a direct split by the message's separators into the lists above: no objects in between.
``hl7``
    the ``hl7`` package (python-hl7): the same recursive split through its container objects,
    several times slower than ``split``; kept as the reference the fast path is tested against.
``hl7apy``
    hl7apy with ``find_groups=False`` and tolerant validation: it checks each segment and field
    against the version's structure, about 50-100 messages a second. Use it to diagnose a
    sender, not on the ingest path (``bench/hl7_parse.py`` measures both).

Both take a ``DecodedMessage`` (``decoding.py``: text already decoded, segment lines split).
"""

from __future__ import annotations

import re
from typing import Protocol

from adapters.hl7v2.decoding import DecodedMessage

__all__ = ["Segment", "V2Message", "Parser", "SplitParser", "Hl7Parser", "Hl7apyParser", "PARSERS", "parser_named"]

Component = list[str]
Repetition = list[Component]
Field = list[Repetition]


class Segment:
    """One segment: ``id`` and ``fields`` (``fields[n]`` is field n; ``fields[0]`` the id)."""

    __slots__ = ("id", "fields", "sequence")

    def __init__(self, segment_id: str, fields: list[Field], sequence: int = 1):
        self.id = segment_id
        self.fields = fields
        self.sequence = sequence  # which occurrence of this segment id in the message, 1-based

    def __repr__(self) -> str:  # no content: segments carry personal data
        return f"<Segment {self.id} #{self.sequence} ({len(self.fields) - 1} fields)>"

    def repetitions(self, field: int) -> Field:
        """Field ``field``'s repetitions (empty ones dropped)."""
        if field >= len(self.fields):
            return []
        return [rep for rep in self.fields[field] if any(any(sub) for sub in rep)]

    def get(self, field: int, component: int = 1, subcomponent: int = 1, repetition: int = 1) -> str:
        """The value at field.component.subcomponent of one repetition, ``""`` when absent."""
        try:
            return self.fields[field][repetition - 1][component - 1][subcomponent - 1]
        except IndexError:
            return ""

    def component(self, field: int, component: int = 1, repetition: int = 1) -> str:
        """A component with its sub-components joined by ``&`` (as the standard writes them)."""
        try:
            return "&".join(self.fields[field][repetition - 1][component - 1])
        except IndexError:
            return ""

    def valued(self, field: int) -> bool:
        return bool(self.repetitions(field))


class V2Message:
    __slots__ = ("segments",)

    def __init__(self, segments: list[Segment]):
        self.segments = segments

    def first(self, segment_id: str) -> Segment | None:
        return next((s for s in self.segments if s.id == segment_id), None)

    def all(self, segment_id: str) -> list[Segment]:
        return [s for s in self.segments if s.id == segment_id]


class Parser(Protocol):
    name: str

    def parse(self, decoded: DecodedMessage) -> V2Message: ...


def _numbered(raw: list[tuple[str, list[Field]]]) -> V2Message:
    seen: dict[str, int] = {}
    segments = []
    for segment_id, fields in raw:
        seen[segment_id] = seen.get(segment_id, 0) + 1
        segments.append(Segment(segment_id, fields, seen[segment_id]))
    return V2Message(segments)


class Unescaper:
    """HL7 escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\.br\\ \\Xhh\\) for one message's separators."""

    def __init__(self, decoded: DecodedMessage):
        e = re.escape(decoded.escape_character)
        self.escape = decoded.escape_character
        self._pattern = re.compile(f"{e}(F|S|T|R|E|\\.br|X[0-9A-Fa-f]+|H|N|\\.sp|Z[^{e}]*|C[0-9A-Fa-f]+|M[0-9A-Fa-f]+){e}")
        self._plain = {
            "F": decoded.field_separator, "S": decoded.component_separator, "T": decoded.subcomponent_separator,
            "R": decoded.repetition_separator, "E": decoded.escape_character, ".br": "\n", ".sp": "\n",
            "H": "", "N": "",
        }

    def __call__(self, value: str) -> str:
        if self.escape not in value:
            return value
        return self._pattern.sub(self._replace, value)

    def _replace(self, match: re.Match) -> str:
        code = match.group(1)
        if code in self._plain:
            return self._plain[code]
        if code[0] == "X":
            try:
                return bytes.fromhex(code[1:]).decode("utf-8", errors="replace")
            except ValueError:
                return ""
        return ""


class Hl7Parser:
    """The ``hl7`` package's split, normalised to ``V2Message``."""

    name = "hl7"

    def __init__(self):
        import hl7  # noqa: F401 - fail at construction if missing

        self._hl7 = hl7

    def parse(self, decoded: DecodedMessage) -> V2Message:
        parsed = self._hl7.parse("\r".join(decoded.lines))
        unescape = Unescaper(decoded)
        raw = []
        for segment in parsed:
            segment_id = str(segment[0])
            fields: list[Field] = [[[[segment_id]]]]
            for index, field in enumerate(segment[1:], start=1):
                if segment_id == "MSH" and index <= 2:  # separators, kept verbatim
                    fields.append([[[str(field)]]])
                else:
                    fields.append(_field_from_hl7(field, unescape))
            raw.append((segment_id, fields))
        return _numbered(raw)


def _field_from_hl7(field, unescape) -> Field:
    if isinstance(field, str):
        return [[[unescape(field)]]]
    if not field or isinstance(field[0], str):  # a simple field: Field(["value"])
        return [[[unescape(str(x))] for x in field]] if len(field) != 1 else [[[unescape(field[0])]]]
    repetitions = []
    for rep in field:
        if isinstance(rep, str):
            repetitions.append([[unescape(rep)]])
            continue
        components = []
        for comp in rep:
            if isinstance(comp, str):
                components.append([unescape(comp)])
            else:
                components.append([unescape(str(sub)) for sub in comp])
        repetitions.append(components)
    return repetitions


class Hl7apyParser:
    """hl7apy's parser (structure checked against the message's version), normalised to ``V2Message``."""

    name = "hl7apy"

    def __init__(self):
        from hl7apy.consts import VALIDATION_LEVEL
        from hl7apy.parser import parse_message

        self._parse_message = parse_message
        self._tolerant = VALIDATION_LEVEL.TOLERANT

    def parse(self, decoded: DecodedMessage) -> V2Message:
        message = self._parse_message("\r".join(decoded.lines), validation_level=self._tolerant, find_groups=False)
        unescape = Unescaper(decoded)
        e = decoded.escape_character
        raw = []
        for segment in message.children:
            segment_id = segment.name
            fields: list[Field] = [[[[segment_id]]]]
            for field in segment.children:
                position = int(field.name.rsplit("_", 1)[1])
                while len(fields) <= position:
                    fields.append([])
                if segment_id == "MSH" and position <= 2:
                    fields[position] = [[[field.to_er7()]]]
                    continue
                # hl7apy does not know formatting escapes: it writes \.br\ back as \E\.br\E\
                er7 = field.to_er7().replace(f"{e}E{e}.br{e}E{e}", f"{e}.br{e}")
                fields[position].append([
                    [unescape(sub) for sub in comp.split(decoded.subcomponent_separator)]
                    for comp in er7.split(decoded.component_separator)
                ])
            raw.append((segment_id, fields))
        return _numbered(raw)


class SplitParser:
    """A direct split of each line by the message's own separators, straight into ``V2Message``.

    The same algorithm as the ``hl7`` package without its container objects: about five
    times faster, so it is the ingest hot path (``bench/hl7_parse.py``).
    """

    name = "split"

    def parse(self, decoded: DecodedMessage) -> V2Message:
        fs, cs, rs, ss = (decoded.field_separator, decoded.component_separator, decoded.repetition_separator,
                          decoded.subcomponent_separator)
        es = decoded.escape_character
        unescape = Unescaper(decoded)

        def field(text: str) -> Field:
            if cs not in text and rs not in text and ss not in text:
                return [[[unescape(text) if es in text else text]]]
            return [[[unescape(sub) if es in sub else sub for sub in comp.split(ss)] for comp in rep.split(cs)]
                    for rep in text.split(rs)]

        raw = []
        for line in decoded.lines:
            parts = line.split(fs)
            segment_id = parts[0]
            if segment_id in ("MSH", "BHS", "FHS"):
                fields: list[Field] = [[[[segment_id]]], [[[fs]]], [[[parts[1] if len(parts) > 1 else ""]]]]
                fields += [field(p) for p in parts[2:]]
            else:
                fields = [[[[segment_id]]], *(field(p) for p in parts[1:])]
            raw.append((segment_id, fields))
        return _numbered(raw)


PARSERS = {"split": SplitParser, "hl7": Hl7Parser, "hl7apy": Hl7apyParser}
_instances: dict[str, Parser] = {}


def parser_named(name: str = "split") -> Parser:
    if name not in _instances:
        _instances[name] = PARSERS[name]()
    return _instances[name]
