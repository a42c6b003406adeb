"""Message templates (Jinja2): every email has a subject, a text body and an HTML body, every SMS a
text body, each branded with the issuer's name, colours and logo.

A template ``NAME`` lives in ``templates/NAME/``: ``subject.txt``, ``body.txt`` and ``body.html``
for email (the HTML extends ``layout.html``), ``sms.txt`` for SMS. HTML is autoescaped; text is not
(it is never interpreted as markup). A missing context value is an error, never an empty string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jinja2

from authpi import i18n

CHANNELS = ("email", "sms")
SMS_MAX_CHARS = 480  # three concatenated SMS parts at most

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("authpi.messages", "templates"),
    autoescape=jinja2.select_autoescape(["html"], default_for_string=False, default=False),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=False,
    trim_blocks=True,
    lstrip_blocks=True,
)
i18n.install(_env)


@dataclass(frozen=True)
class Content:
    subject: str | None
    text: str
    html: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "text": self.text, "html": self.html}

    @classmethod
    def of(cls, value: dict[str, Any]) -> Content:
        return cls(value.get("subject"), str(value["text"]), value.get("html"))


class UnknownTemplate(LookupError):
    pass


def exists(template: str, channel: str) -> bool:
    name = f"{template}/subject.txt" if channel == "email" else f"{template}/sms.txt"
    try:
        _env.get_template(name)
    except jinja2.TemplateNotFound:
        return False
    return True


def render(
    template: str, channel: str, brand: dict[str, Any], context: dict[str, Any], locale: str = i18n.DEFAULT
) -> Content:
    """The message ``template`` for ``channel`` with ``context``, branded with ``brand`` (``name``,
    ``logo_url``, ``primary_color``, ``background_color``), in ``locale`` (one of
    ``i18n.SUPPORTED``; English for any other)."""
    if channel not in CHANNELS or not exists(template, channel):
        raise UnknownTemplate(f"no {channel} template {template!r}")
    with i18n.use(locale) as used:
        return _render(template, channel, {**context, "brand": brand, "lang": used})


def _render(template: str, channel: str, values: dict[str, Any]) -> Content:
    if channel == "sms":
        text = _env.get_template(f"{template}/sms.txt").render(values).strip()
        return Content(None, text[:SMS_MAX_CHARS], None)
    # A subject is one header line: whatever the template or its values hold, no line break.
    subject = " ".join(_env.get_template(f"{template}/subject.txt").render(values).split())
    text = _env.get_template(f"{template}/body.txt").render(values).strip() + "\n"
    html = _env.get_template(f"{template}/body.html").render(values)
    return Content(subject, text, html)
