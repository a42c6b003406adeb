"""Translations of the hosted pages and of the messages sent to users (English, German, French,
Spanish), with gettext catalogues in ``authpi/locale/<lang>/LC_MESSAGES/messages.po``.

The catalogues are compiled from their ``.po`` source in memory, once per process (``preload`` at
startup; a broken catalogue stops the server there): nothing generated is committed or needs a
build step, so a source checkout, an editable install and a wheel all behave the same
(``catalogues.py`` extracts and updates them).

The language of the current request lives in a context variable that ``use`` sets while a page or a
message is rendered. Strings defined in Python are marked with ``_l`` (``_ln`` with a plural): they
stay lazy and are translated when they are turned into text, so a module constant such as a
method's wrong-code text is read in the language of the page that shows it, not the one of import
time. Placeholders are ``%(name)s``, filled in after translation (the same as Jinja2's
``{% trans %}`` blocks), so translators can move them.
"""

from __future__ import annotations

import functools
import gettext as _gettext
import io
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from babel.core import negotiate_locale
from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

DEFAULT = "en"
SUPPORTED = ("en", "de", "fr", "es")  # English is the source language: it has no catalogue
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
DOMAIN = "messages"
# Bounds on what a client sends: a handful of language tags is plenty for negotiation.
MAX_TAGS = 16
MAX_HEADER_CHARS = 512

_current: ContextVar[str] = ContextVar("authpi_locale", default=DEFAULT)


def catalogue_path(locale: str) -> Path:
    return LOCALE_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def translations(locale: str) -> _gettext.NullTranslations:
    """``locale``'s catalogue compiled from its ``.po`` (fuzzy entries left out, as msgfmt does);
    the identity for English and for a language without a catalogue."""
    path = catalogue_path(locale)
    if locale == DEFAULT or not path.is_file():
        return _gettext.NullTranslations()
    with path.open("rb") as source:
        catalog = read_po(source, locale=locale, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return _gettext.GNUTranslations(compiled)


def preload() -> None:
    """Compile every catalogue now (at startup), so no request pays for it."""
    for locale in SUPPORTED:
        translations(locale)


def current() -> str:
    return _current.get()


@contextmanager
def use(locale: str) -> Iterator[str]:
    """Translate into ``locale`` (one of ``SUPPORTED``) until the block ends."""
    token = _current.set(locale if locale in SUPPORTED else DEFAULT)
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def gettext(message: str) -> str:
    return translations(_current.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(_current.get()).ngettext(singular, plural, n)


class LazyText:
    """A marked string translated each time it becomes text, in the language in use then."""

    __slots__ = ("_n", "_params", "_plural", "_singular")

    def __init__(self, singular: str, plural: str | None, n: int | None, params: dict[str, Any]) -> None:
        self._singular = singular
        self._plural = plural
        self._n = n
        self._params = params

    def __str__(self) -> str:
        if self._plural is not None and self._n is not None:
            text = ngettext(self._singular, self._plural, self._n)
        else:
            text = gettext(self._singular)
        return text % self._params if self._params else text

    def __bool__(self) -> bool:
        return bool(self._singular)

    def __repr__(self) -> str:
        return f"LazyText({self._singular!r})"

    def format(self, **params: Any) -> LazyText:
        """The same text with (more) placeholders filled in, still lazy."""
        return LazyText(self._singular, self._plural, self._n, {**self._params, **params})


class LazyDateTime:
    """A moment (epoch milliseconds, shown in UTC) written out in the language in use when it
    becomes text, month names included (CLDR pattern ``DATE_TIME_PATTERN``)."""

    __slots__ = ("_ms",)

    def __init__(self, ms: int) -> None:
        self._ms = ms

    def __str__(self) -> str:
        moment = datetime.fromtimestamp(self._ms / 1000, UTC)
        return format_datetime(moment, DATE_TIME_PATTERN, tzinfo=UTC, locale=_current.get())


DATE_TIME_PATTERN = "dd MMMM y, HH:mm 'UTC'"  # 01 May 2026, 09:30 UTC / 01 mai 2026, 09:30 UTC

# What a page or a message can show: plain text (a user's name, an issuer's) or a marked string.
Text = str | LazyText


def _l(message: str, **params: Any) -> LazyText:
    """Mark ``message`` for translation; ``params`` fill its ``%(name)s`` placeholders."""
    return LazyText(message, None, None, params)


def _ln(singular: str, plural: str, n: int, **params: Any) -> LazyText:
    """Mark a message with a plural form chosen by ``n`` (also available as ``%(n)s``)."""
    return LazyText(singular, plural, n, {"n": n, **params})


def _tags(values: Iterable[str]) -> list[str]:
    return [value for value in (v.strip() for v in values) if value and value != "*"][:MAX_TAGS]


def parse_accept_language(header: str | None) -> list[str]:
    """The language tags of an ``Accept-Language`` header, most wanted first (RFC 9110 §12.5.4),
    leaving out what the client refuses (``q=0``) and anything malformed."""
    if not header or len(header) > MAX_HEADER_CHARS:
        return []
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[: MAX_TAGS * 2]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                continue
        if quality <= 0 or not tag:
            continue
        ranked.append((-quality, position, tag.strip()))
    return _tags(tag for _, _, tag in sorted(ranked))


def supported(tags: Iterable[str]) -> str | None:
    """The first of ``tags`` (language tags, in order of preference) that a catalogue serves, a
    regional tag falling back to its language (``de-AT`` → ``de``)."""
    preferred = [tag.replace("_", "-") for tag in _tags(tags)]
    found = negotiate_locale(preferred, SUPPORTED, sep="-", aliases={}) if preferred else None
    return found.lower() if found else None  # babel answers in the caller's spelling ("DE")


def choose(
    ui_locales: Iterable[str] = (), accept_language: str | None = None, default: str | None = None
) -> str:
    """The language of a page or message: the first supported of the authorization request's
    ``ui_locales``, else the best of the browser's ``Accept-Language``, else the issuer's default,
    else English."""
    return (
        supported(ui_locales)
        or supported(parse_accept_language(accept_language))
        or (default if default in SUPPORTED else None)
        or DEFAULT
    )


def install(env: Any) -> None:
    """Give a Jinja2 environment ``{% trans %}`` and ``_()`` in the language in use at render
    time (newstyle: placeholders filled and escaped by Jinja2; whitespace in blocks collapsed)."""
    env.add_extension("jinja2.ext.i18n")
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_callables(gettext, ngettext, newstyle=True)
