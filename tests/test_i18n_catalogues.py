"""The translation catalogues are complete, and nothing a user reads escapes them.

* Every string marked in the sources is in ``messages.pot`` and translated (not empty, not fuzzy,
  same placeholders) in German, French and Spanish: ``scripts/i18n check`` as a test.
* No template of a hosted page or a message has user-visible text outside ``{% trans %}`` /
  ``_()``: the literal text of each template (what Jinja2 outputs as is) is read without markup,
  scripts and styles, and must hold no letters; nor may the attributes a user reads (``alt``,
  ``title``, ``aria-label``, ``placeholder``).
* Python code of the hosted pages passes no plain string where a page shows text (headings,
  messages, form errors, button labels): those must be ``_l`` marks, translated per request.
Each check is also run on a sample with the fault it looks for, so it is known to catch it.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import jinja2
import pytest
from babel.messages.pofile import read_po, write_po
from jinja2 import nodes

from authpi import i18n
from authpi.i18n import catalogues

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "src" / "authpi"
TEMPLATE_DIRS = [
    SOURCES / "oidc" / "templates",
    SOURCES / "oidc" / "portal" / "templates",
    *sorted((SOURCES / "oidc" / "signin" / "methods").glob("*/templates")),
    SOURCES / "messages" / "templates",
]
_LETTER = re.compile(r"[^\W\d_]")
_HIDDEN = re.compile(r"<(script|style)\b.*?</\1>|<!--.*?-->", re.S | re.I)
_READ_ATTRIBUTES = re.compile(r'\b(?:alt|title|aria-label|placeholder)="([^"]*)"', re.I)
_TAG = re.compile(r"<[^>]*>")
_ENTITY = re.compile(r"&#?\w+;")
GAP = "\x00"  # where the template outputs an expression (a translation, a value)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(autoescape=True)
    i18n.install(env)
    return env


def unmarked(source: str, env: jinja2.Environment | None = None) -> list[str]:
    """The user-visible text of a template that is not marked for translation."""
    tree = (env or _environment()).parse(source)
    parts: list[str] = []
    for output in tree.find_all(nodes.Output):
        for child in output.nodes:
            parts.append(child.data if isinstance(child, nodes.TemplateData) else GAP)
    skeleton = _HIDDEN.sub(GAP, "".join(parts))
    found = [value for value in _READ_ATTRIBUTES.findall(skeleton) if _LETTER.search(value)]
    text = _ENTITY.sub(" ", _TAG.sub(GAP, skeleton))
    found += [piece.strip() for piece in text.split(GAP) if _LETTER.search(piece)]
    return found


def _templates() -> list[Path]:
    return sorted(p for d in TEMPLATE_DIRS for p in d.rglob("*") if p.suffix in (".html", ".txt"))


# --- the catalogues -----------------------------------------------------------------------------------


def test_every_marked_string_is_translated_into_every_language() -> None:
    problems = catalogues.problems(ROOT)
    assert problems == [], "run scripts/i18n update, then translate:\n" + "\n".join(problems)
    template = read_po((SOURCES / "locale" / "messages.pot").open("rb"))
    assert len([m for m in template if m.id]) > 100  # the pages and messages are all in it


def test_every_language_compiles_and_translates_at_runtime() -> None:
    for locale in i18n.SUPPORTED:
        with i18n.use(locale):
            text = i18n.gettext("Sign in")
        assert (text == "Sign in") == (locale == "en"), (locale, text)
    assert set(i18n.SUPPORTED) == {"en", *catalogues.TRANSLATED}


def _sample_tree(tmp_path: Path, source: str) -> Path:
    (tmp_path / "src" / "authpi").mkdir(parents=True)
    shutil.copy(ROOT / "babel.cfg", tmp_path / "babel.cfg")
    (tmp_path / "src" / "authpi" / "sample.py").write_text(source)
    return tmp_path


def _translate(root: Path, locale: str, text: str) -> None:
    path = catalogues.po_path(root, locale)
    with path.open("rb") as source:
        catalog = read_po(source, locale=locale)
    for message in catalog:
        if message.id:
            message.string = text
    with path.open("wb") as out:
        write_po(out, catalog)


def test_the_check_catches_new_untranslated_and_broken_strings(tmp_path: Path) -> None:
    """The workflow for a new string: the check fails until ``update`` and a translation."""
    root = _sample_tree(tmp_path, 'from authpi.i18n import _l\nHELLO = _l("Hello %(name)s")\n')
    assert any("missing 'Hello %(name)s'" in p for p in catalogues.problems(root))

    catalogues.update(root)
    problems = catalogues.problems(root)
    assert {p.split(":")[0] for p in problems} == set(catalogues.TRANSLATED)
    assert all("is not translated" in p for p in problems)

    for locale in catalogues.TRANSLATED:
        _translate(root, locale, "Hallo %(nom)s")  # a placeholder renamed: a KeyError at runtime
    assert len(catalogues.problems(root)) == 3
    assert all("placeholders" in p for p in catalogues.problems(root))

    for locale in catalogues.TRANSLATED:
        _translate(root, locale, "¡Hola %(name)s!")
    assert catalogues.problems(root) == []

    # The English changes: every translation turns fuzzy, which the check refuses.
    (root / "src" / "authpi" / "sample.py").write_text('from authpi.i18n import _l\n_l("Hello, %(name)s")\n')
    catalogues.update(root)
    assert len(catalogues.problems(root)) == 3
    assert all("fuzzy" in p for p in catalogues.problems(root))


# --- templates ----------------------------------------------------------------------------------------


def test_no_template_shows_unmarked_text() -> None:
    env = _environment()
    assert len(_templates()) >= 20
    found = {
        str(path.relative_to(ROOT)): texts
        for path in _templates()
        if (texts := unmarked(path.read_text(), env))
    }
    assert found == {}, "mark these with {% trans %} or _():\n" + "\n".join(
        f"{k}: {v}" for k, v in found.items()
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("<p>Hello</p>", ["Hello"]),
        ('<img src="x.png" alt="Company logo">', ["Company logo"]),
        ('<ul aria-label="Backup codes"></ul>', ["Backup codes"]),
        ("{% if x %}<button>Go on</button>{% endif %}", ["Go on"]),
        ("<p>{{ _('Hello') }} · {{ name }} world</p>", ["world"]),
        ("Your code is: {{ code }}", ["Your code is:"]),
        ("<p>{% trans %}Hello {{ name }}{% endtrans %}</p>", []),
        ('<input value="{{ x }}" aria-label="{{ _("Code") }}"> {{ code }} &middot;', []),
        ("<script>const hello = 'world';</script><style>p { color: red }</style><!-- a note -->", []),
    ],
)
def test_the_template_check_catches_unmarked_text(source: str, expected: list[str]) -> None:
    assert unmarked(source) == expected


_SENTENCE = re.compile(r"""(["'`])[A-Z][a-z']*\s[^"'`]*\1""")


def test_page_scripts_take_their_words_from_the_page() -> None:
    """A script's messages come translated from the page (data-* attributes), never its own."""
    scripts = sorted(SOURCES.rglob("static/*.js"))
    assert scripts
    found = {str(p.relative_to(ROOT)): _SENTENCE.findall(p.read_text()) for p in scripts}
    assert {k: v for k, v in found.items() if v} == {}
    assert _SENTENCE.search('status.textContent = "Waiting for your passkey";')


# --- Python strings the pages show --------------------------------------------------------------------

# Keyword arguments that a page shows to the user, and the positions of shown text in calls.
_SHOWN_KEYWORDS = {"notice", "heading", "instructions", "button", "label", "text", "title"}
# ``error`` too, but for the error of a QR code (segno's error-correction level).
_ERROR_KEYWORD_EXCEPT = {".make"}
_SHOWN_POSITIONS = {
    "message": (3, 4),  # pages.message(request, rt, issuer, heading, text)
    ".message": (1, 2),  # flow.message(request, heading, text)
    "plain_message": (1, 2),
    "rate_limited": (4,),
    "Offer": (0,),
    "PageError": (0,),
}
PAGE_CODE = [
    SOURCES / "availability.py",
    SOURCES / "request_limits.py",
    *sorted((SOURCES / "oidc").rglob("*.py")),
]


def _callee(call: ast.Call) -> str:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return "." + call.func.attr
    return ""


def _plain(node: ast.AST) -> bool:
    """A literal string (or f-string) where a marked one belongs."""
    return (isinstance(node, ast.Constant) and isinstance(node.value, str)) or isinstance(node, ast.JoinedStr)


def plain_shown_strings(source: str) -> list[str]:
    found = []
    for call in (n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)):
        callee = _callee(call)
        shown = [call.args[i] for i in _SHOWN_POSITIONS.get(callee, ()) if i < len(call.args)]
        shown += [k.value for k in call.keywords if k.arg in _SHOWN_KEYWORDS]
        if callee not in _ERROR_KEYWORD_EXCEPT:
            shown += [k.value for k in call.keywords if k.arg == "error"]
        found += [f"line {node.lineno}: {ast.unparse(node)}" for node in shown if _plain(node)]
    return found


def test_page_code_passes_no_plain_string_where_a_page_shows_text() -> None:
    found = {
        str(path.relative_to(ROOT)): texts
        for path in PAGE_CODE
        if (texts := plain_shown_strings(path.read_text()))
    }
    assert found == {}, "wrap these in _l():\n" + "\n".join(f"{k}: {v}" for k, v in found.items())


def test_the_python_check_catches_plain_strings() -> None:
    sample = """
flow.message(request, "Sign-up closed", _l("No sign-ups."))
message(request, rt, issuer, _l("Heading"), f"Locked for {minutes} minutes")
render(request, "page.html", error="Wrong code.", notice=_l("Fine."))
Offer("Use a passkey", url, method_id)
rate_limited(request, rt, issuer, "login", _l("Too many."))
"""
    assert [line.split(": ", 1)[1] for line in plain_shown_strings(sample)] == [
        "'Sign-up closed'",
        "f'Locked for {minutes} minutes'",
        "'Wrong code.'",
        "'Use a passkey'",
    ]


# --- choosing a language ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ui_locales", "accept_language", "default", "expected"),
    [
        (["pt-BR", "DE-at", "fr"], "es", "fr", "de"),  # first supported tag, any case, region dropped
        ([], "fr-CH, fr;q=0.9, en;q=0.8", None, "fr"),
        ([], "en;q=0.1, es;q=0.5", None, "es"),  # by quality, not by position
        ([], "de;q=0, es;q=0.2", None, "es"),  # q=0: refused
        ([], "de;q=abc, fr", None, "fr"),  # a malformed entry is skipped
        ([], "ja, zh", "es", "es"),  # the issuer's default
        ([], "ja", "pt", "en"),  # a default without a catalogue is ignored
        ([], "de" + ", x" * 400, None, "en"),  # an oversized header is not parsed at all
        (["x-" * 5], None, None, "en"),
    ],
)
def test_choose(
    ui_locales: list[str], accept_language: str | None, default: str | None, expected: str
) -> None:
    assert i18n.choose(ui_locales, accept_language, default) == expected


def test_a_lazy_text_is_translated_when_used_not_when_defined() -> None:
    text = i18n._ln("%(n)s day left for %(who)s", "%(n)s days left for %(who)s", 3, who="Ada")
    with i18n.use("de"):
        wrong = str(i18n._l("Incorrect username or password."))
    assert wrong == "Benutzername oder Passwort ist falsch."
    assert str(i18n._l("Incorrect username or password.")) == "Incorrect username or password."
    assert str(text) == "3 days left for Ada"  # no catalogue has it: English, filled in
    assert bool(i18n._l("x")) and not bool(i18n._l(""))


def test_a_lazy_date_is_written_in_the_language_in_use() -> None:
    moment = i18n.LazyDateTime(1777627800000)  # 2026-05-01T09:30:00Z
    written = {}
    for locale in i18n.SUPPORTED:
        with i18n.use(locale):
            written[locale] = str(moment)
    assert written["en"] == "01 May 2026, 09:30 UTC"  # the English the invitation mail always had
    assert written["de"] == "01 Mai 2026, 09:30 UTC" and written["fr"] == "01 mai 2026, 09:30 UTC"
    assert "mayo" in written["es"]
