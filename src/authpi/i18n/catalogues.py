"""Maintaining the catalogues from a source checkout (``scripts/i18n``; the tests use ``problems``).

``extract`` reads every marked string the way ``babel.cfg`` says (Python ``_l``/``_ln`` marks,
Jinja2 ``{% trans %}`` blocks and ``_()`` calls) into ``messages.pot``; ``update`` merges that
template into each language's ``messages.po`` (new strings arrive empty, changed ones fuzzy, gone
ones are dropped); ``problems`` lists what keeps a language from being complete. Locations are
written without line numbers, so moving code does not rewrite the catalogues.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from babel.messages.catalog import Catalog, Message
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po, write_po

from authpi import i18n

KEYWORDS = {**DEFAULT_KEYWORDS, "_l": None, "_ln": (1, 2)}
TRANSLATED = tuple(locale for locale in i18n.SUPPORTED if locale != i18n.DEFAULT)
PROJECT = "AuthPI Server"
WIDTH = 100
_PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def repository_root() -> Path:
    """The checkout this package was imported from (``src/authpi/i18n`` → the root)."""
    return Path(i18n.__file__).resolve().parents[3]


def template_path(root: Path) -> Path:
    return root / "src" / "authpi" / "locale" / f"{i18n.DOMAIN}.pot"


def po_path(root: Path, locale: str) -> Path:
    return root / "src" / "authpi" / "locale" / locale / "LC_MESSAGES" / f"{i18n.DOMAIN}.po"


def extract(root: Path) -> Catalog:
    """Every marked string of the sources under ``root``, as a template catalogue."""
    with (root / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config, "babel.cfg")  # type: ignore[no-untyped-call]
    catalog = Catalog(project=PROJECT, domain=i18n.DOMAIN, charset="utf-8", fuzzy=False)
    for filename, lineno, message, comments, context in extract_from_dir(
        root,
        method_map,
        options_map,
        keywords=KEYWORDS,
        comment_tags=("Translators:",),
        strip_comment_tags=True,
    ):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


def _write(path: Path, catalog: Catalog) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        write_po(out, catalog, width=WIDTH, include_lineno=False, ignore_obsolete=True, sort_by_file=False)


def _read(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as source:
        return read_po(source, locale=locale, domain=i18n.DOMAIN)


def write_template(root: Path) -> Catalog:
    template = extract(root)
    _write(template_path(root), template)
    return template


def update(root: Path) -> None:
    """Refresh ``messages.pot`` from the sources and merge it into every language's catalogue."""
    template = write_template(root)
    for locale in TRANSLATED:
        path = po_path(root, locale)
        catalog = _read(path, locale) if path.is_file() else Catalog(locale=locale, domain=i18n.DOMAIN)
        catalog.project = PROJECT
        catalog.update(template, update_creation_date=False)
        _write(path, catalog)


def _ids(message: Message) -> tuple[str, ...]:
    return tuple(message.id) if isinstance(message.id, (list, tuple)) else (message.id,)


def _strings(message: Message) -> tuple[str, ...]:
    strings = message.string if isinstance(message.string, (list, tuple)) else (message.string,)
    return tuple(text or "" for text in strings)


def _placeholders(text: str) -> set[str]:
    return set(_PLACEHOLDER.findall(text))


def problems(root: Path) -> list[str]:
    """Why the catalogues are not complete: a marked string missing from the template (run
    ``scripts/i18n update``), or one a language does not translate (empty, fuzzy, or with other
    placeholders than the English)."""
    found: list[str] = []
    sources = {m.id: m for m in extract(root) if m.id}
    template = _read(template_path(root)) if template_path(root).is_file() else Catalog()
    known = {m.id for m in template if m.id}
    for key in sources.keys() - known:
        found.append(f"messages.pot: missing {_ids(sources[key])[0]!r} (run scripts/i18n update)")
    for key in known - sources.keys():
        found.append(f"messages.pot: stale {key!r} (run scripts/i18n update)")
    for locale in TRANSLATED:
        path = po_path(root, locale)
        if not path.is_file():
            found.append(f"{locale}: no catalogue (run scripts/i18n update)")
            continue
        catalog = _read(path, locale)
        for key, source in sources.items():
            entry = catalog.get(key)
            label = f"{locale}: {_ids(source)[0]!r}"
            if entry is None:
                found.append(f"{label} is not in the catalogue (run scripts/i18n update)")
            elif entry.fuzzy:
                found.append(f"{label} is fuzzy (check the translation, then remove the fuzzy flag)")
            elif not all(_strings(entry)):
                found.append(f"{label} is not translated")
            else:
                wanted = set().union(*(_placeholders(text) for text in _ids(source)))
                for text in _strings(entry):
                    # A plural form may leave out %(n)s ("one code left" says no number).
                    if _placeholders(text) - wanted or (wanted - {"n"}) - _placeholders(text):
                        found.append(f"{label}: placeholders {sorted(wanted)} differ in {text!r}")
    return found


def main(argv: list[str]) -> int:
    commands = ("extract", "update", "check")
    if len(argv) != 1 or argv[0] not in commands:
        print(f"usage: scripts/i18n {'|'.join(commands)}", file=sys.stderr)
        return 2
    root = repository_root()
    if not (root / "babel.cfg").is_file():
        print("error: run from a source checkout (babel.cfg not found)", file=sys.stderr)
        return 2
    if argv[0] == "extract":
        template = write_template(root)
        print(f"{template_path(root)}: {len(template)} strings")
    elif argv[0] == "update":
        update(root)
        print(f"updated {template_path(root)} and {', '.join(TRANSLATED)}")
    found = problems(root)
    for problem in found:
        print(problem)
    if argv[0] == "check" and not found:
        print("every marked string is translated into " + ", ".join(TRANSLATED))
    return 1 if found and argv[0] == "check" else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
