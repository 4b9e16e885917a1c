"""The readable guide: one HTML page per county StructureDefinition, plus an index.

``render_guide(definitions, examples_dir)`` returns ``{file name: HTML}``; ``build.py`` writes
them to ``profiles/guide/`` and the server serves that folder under ``/guide``. A page lists
the elements the profile constrains (from the snapshot, in its order): cardinality, types and
reference targets, fixed and pattern values, bindings, slicing and invariants; then the
examples from ``profiles/local/examples/index.json``: the valid one in full, and each invalid
one with what is wrong and the element paths the validator reports.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

STYLE = """
body { font-family: system-ui, "Noto Sans CJK SC", sans-serif; margin: 2rem auto; max-width: 72rem; color: #222; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.5rem; vertical-align: top; text-align: left; }
th { background: #eef; } code, pre { font-family: ui-monospace, monospace; font-size: 0.85rem; }
pre { background: #f6f6f6; padding: 0.8rem; overflow-x: auto; } .slice { color: #a50; }
"""


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")


def _types(element: dict) -> str:
    parts = []
    for type_ in element.get("type", []):
        text = escape(type_["code"])
        targets = type_.get("targetProfile") or type_.get("profile") or []
        if targets:
            links = [_link(url) for url in targets]
            text += "(" + " | ".join(links) + ")"
        parts.append(text)
    return ", ".join(parts)


def _link(url: str) -> str:
    name = url.rsplit("/", 1)[-1]
    if "county-fhir.example.org" in url:
        return f'<a href="{escape(name)}.html">{escape(name)}</a>'
    return f'<a href="{escape(url)}">{escape(name)}</a>'


def _rules(element: dict, source: str) -> str:
    notes = []
    for key, value in element.items():
        if key.startswith(("fixed", "pattern")):
            kind = "fixed" if key.startswith("fixed") else "pattern"
            notes.append(f"{kind}: <code>{escape(json.dumps(value, ensure_ascii=False))}</code>")
    if "binding" in element:
        binding = element["binding"]
        notes.append(f"binding ({escape(binding['strength'])}): {_link(binding.get('valueSet', ''))}")
    if "slicing" in element:
        slicing = element["slicing"]
        by = ", ".join(f"{d['type']} of {d['path']}" for d in slicing.get("discriminator", []))
        notes.append(f"sliced by {escape(by)} ({escape(slicing.get('rules', 'open'))})")
    for constraint in element.get("constraint", []):
        if constraint.get("source") != source:  # the base resource's own invariants
            continue
        notes.append(f"<b>{escape(constraint['key'])}</b>: {escape(constraint.get('human', ''))}"
                     f"<br><code>{escape(constraint.get('expression', ''))}</code>")
    return "<br>".join(notes)


def _meaning(element: dict, titles: dict[str, str]) -> str:
    """The element's short text; for an extension slice, the extension's title."""
    for type_ in element.get("type", []):
        for profile in type_.get("profile", []):
            if profile in titles:
                return titles[profile]
    return element.get("short", "")


def _elements(definition: dict, titles: dict[str, str]) -> str:
    constrained = {e["id"] for e in definition["differential"]["element"]}
    rows = []
    for element in definition["snapshot"]["element"]:
        if element["id"] not in constrained:
            continue
        name = escape(element["id"])
        if element.get("sliceName"):
            name = name.replace(":", '<span class="slice">:', 1) + "</span>"
        short = escape(_meaning(element, titles))
        rows.append(f"<tr><td><code>{name}</code></td><td>{element.get('min', '')}..{escape(str(element.get('max', '')))}"
                    f"</td><td>{_types(element)}</td><td>{_rules(element, definition['url'])}</td>"
                    f"<td>{short}</td></tr>")
    return ("<table><tr><th>element</th><th>card.</th><th>type</th><th>rules</th><th>meaning</th></tr>\n"
            + "\n".join(rows) + "</table>")


def _examples(definition: dict, examples: list[dict], examples_dir: Path) -> str:
    mine = [e for e in examples if e["profile"] == definition["url"]]
    if not mine:
        return ""
    parts = ["<h2>Examples</h2>"]
    for example in (e for e in mine if e["valid"]):
        text = (examples_dir / example["file"]).read_text(encoding="utf-8")
        parts.append(f"<h3>Valid: <code>{escape(example['file'])}</code></h3><pre>{escape(text)}</pre>")
    invalid = [e for e in mine if not e["valid"]]
    if invalid:
        parts.append("<h3>Invalid</h3><table><tr><th>file</th><th>what is wrong</th><th>reported at</th></tr>")
        parts += [f"<tr><td><code>{escape(e['file'])}</code></td><td>{escape(e['description'])}</td>"
                  f"<td><code>{'<br>'.join(escape(p) for p in e['errors'])}</code></td></tr>" for e in invalid]
        parts.append("</table>")
    return "\n".join(parts)


def _profile_page(definition: dict, titles: dict[str, str], examples: list[dict], examples_dir: Path) -> str:
    facts = [("Canonical URL", f"<code>{escape(definition['url'])}</code>"),
             ("Based on", _link(definition["baseDefinition"])),
             ("Status", escape(definition.get("status", "")))]
    if definition.get("context"):
        facts.append(("Used on", ", ".join(f"<code>{escape(c['expression'])}</code>" for c in definition["context"])))
    body = (f'<p><a href="index.html">All profiles</a></p><h1>{escape(definition["title"])}</h1>'
            f"<p>{escape(definition.get('description', ''))}</p><table>"
            + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts)
            + "</table><h2>Elements the profile constrains</h2>" + _elements(definition, titles)
            + _examples(definition, examples, examples_dir)
            + f'<p>The StructureDefinition (differential and snapshot): <code>profiles/local/'
              f'StructureDefinition-{escape(definition["id"])}.json</code>, also served at '
              f'<code>/fhir/StructureDefinition/{escape(definition["id"])}</code>.</p>')
    return _page(definition["title"], body)


def _index(definitions: list[dict]) -> str:
    def rows(kind: list[dict]) -> str:
        return "".join(f'<tr><td><a href="{escape(d["id"])}.html">{escape(d["title"])}</a></td>'
                       f"<td>{escape(d['type'] if d['type'] != 'Extension' else ', '.join(c['expression'] for c in d.get('context', [])))}</td>"
                       f"<td>{escape(d.get('description', ''))}</td></tr>" for d in kind)
    profiles = [d for d in definitions if d["type"] != "Extension"]
    extensions = [d for d in definitions if d["type"] == "Extension"]
    body = ("<h1>County chronic-disease network: profiles</h1>"
            "<p>The local FHIR profiles of the county network (county hospital, township health centres, "
            "village clinics, CDC), built on FHIR R4B (<code>hl7.fhir.r4b.core@4.3.0</code>). A resource that "
            "claims one of them in <code>meta.profile</code> is validated when it is written "
            "(<code>FHIR_VALIDATION</code>) and by <code>$validate</code>.</p>"
            "<h2>Profiles</h2><table><tr><th>profile</th><th>type</th><th>description</th></tr>"
            + rows(profiles) + "</table><h2>Extensions</h2><table><tr><th>extension</th><th>used on</th>"
            "<th>description</th></tr>" + rows(extensions) + "</table>")
    return _page("County profiles", body)


def render_guide(definitions: list[dict], examples_dir: Path) -> dict[str, str]:
    index_file = examples_dir / "index.json"
    examples = json.loads(index_file.read_text(encoding="utf-8"))["examples"] if index_file.exists() else []
    titles = {d["url"]: d["title"] for d in definitions}
    pages = {f"{d['id']}.html": _profile_page(d, titles, examples, examples_dir) for d in definitions}
    pages["index.html"] = _index(definitions)
    return pages
