"""The one mail path: render a subject, a text body and an optional HTML body, and send them.

Every mail of the app goes through :func:`send`: the emailed codes
(``email_otp``), the reset link (``passwords``) and the security notices
(``notifications``). The templates are the site's to override; the context
is the caller's.

* The subject's line breaks are removed and the result stripped (a subject
  is one line, whatever the template's trailing newline).
* The HTML body is optional: a template that does not exist is skipped, the
  mail goes as text alone (``html_required=True`` lets a missing template
  raise, as the reset mail always did).
* Language: with ``language`` None the templates render in the language
  active in the caller (the request's, through ``LocaleMiddleware``: what
  the code and reset mails have always done); a language code renders them
  under ``translation.override`` (a job run outside the request, whose
  thread has no active language, renders in the one its caller noted).
* The sender is ``DEFAULT_FROM_EMAIL`` (Django's ``EmailMessage`` default).
* Nothing here logs: a body can hold a code or a link. A failing backend
  raises; the caller decides what a failure means (a code mail answers
  503, a reset link is revoked, a notice is logged and forgotten).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from django.core.mail import EmailMultiAlternatives
from django.template import TemplateDoesNotExist
from django.template.loader import render_to_string
from django.utils import translation

__all__ = ["MailTemplates", "render", "send"]


@dataclass(frozen=True)
class MailTemplates:
    """The template names of one mail: subject, text body and (optional) HTML body."""

    subject: str
    text: str
    html: str | None = None


def render(
    templates: MailTemplates, context: dict[str, Any], *, to: list[str], language: str | None = None,
    html_required: bool = False,
) -> EmailMultiAlternatives:
    """Return the message ``templates`` make with ``context``, addressed to ``to`` (not sent).

    Raises TemplateDoesNotExist for a missing subject or text template (and
    a missing HTML one with ``html_required``).
    """
    with translation.override(language) if language else nullcontext():
        subject = "".join(render_to_string(templates.subject, context).splitlines()).strip()
        message = EmailMultiAlternatives(subject=subject, body=render_to_string(templates.text, context), to=to)
        if templates.html is not None:
            try:
                message.attach_alternative(render_to_string(templates.html, context), "text/html")
            except TemplateDoesNotExist:
                if html_required:
                    raise
    return message


def send(
    templates: MailTemplates, context: dict[str, Any], *, to: list[str], language: str | None = None,
    html_required: bool = False,
) -> None:
    """Render the mail (see :func:`render`) and send it; the backend's error is raised, never logged here."""
    render(templates, context, to=to, language=language, html_required=html_required).send(fail_silently=False)
