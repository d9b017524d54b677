"""Forms of the HTML pages (login and two-factor).

They only check shape (types, sizes); every policy decision (is the code
right, is the user locked out) is the services'. The JSON views apply the
same limits through ``views.json.required_text``.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from .services.factors import MAX_CODE_LENGTH
from .services.inputs import is_plain_text
from .services.pending import MAX_IDENTIFIER_LENGTH, MAX_PASSWORD_LENGTH, MAX_TOKEN_LENGTH

__all__ = [
    "CodeForm",
    "EmailConfirmForm",
    "LoginForm",
    "PasswordForm",
    "TotpStartForm",
    "TwoFactorEmailGuardMixin",
    "VerifyForm",
]

METHOD_LABELS = {
    "totp": _("Authenticator app"),
    "webauthn": _("Security key or passkey"),
    "email": _("Code sent by email"),
    "recovery": _("Recovery code"),
}


class _PlainTextMixin:
    """Refuse NUL bytes and lone surrogates in every field (the database would)."""

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean()  # type: ignore[misc]
        for name, value in list(cleaned.items()):
            if isinstance(value, str) and value and not is_plain_text(value, max_length=100_000):
                self.add_error(name, _("Enter text without control characters."))  # type: ignore[attr-defined]
        return cleaned


class LoginForm(_PlainTextMixin, forms.Form):
    username = forms.CharField(
        label=_("Username or email"),
        max_length=MAX_IDENTIFIER_LENGTH,
        widget=forms.TextInput(attrs={"autofocus": True, "autocomplete": "username", "autocapitalize": "none"}),
    )
    password = forms.CharField(
        label=_("Password"),
        max_length=MAX_PASSWORD_LENGTH,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


def _code_field(label: Any = None, *, required: bool = True) -> forms.CharField:
    return forms.CharField(
        label=label or _("Code"),
        max_length=MAX_CODE_LENGTH,
        required=required,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code", "inputmode": "text", "autocapitalize": "none", "spellcheck": "false",
            }
        ),
    )


class VerifyForm(_PlainTextMixin, forms.Form):
    """The second step of a login: which method, and its code."""

    method = forms.ChoiceField(label=_("Method"), widget=forms.RadioSelect)
    code = _code_field()

    def __init__(self, *args: Any, methods: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A security key is used with its own button (webauthn.js), not with a typed code.
        methods = [m for m in methods if m != "webauthn"]
        self.fields["method"].choices = [(m, METHOD_LABELS[m]) for m in methods]  # type: ignore[attr-defined]
        if methods:
            self.fields["method"].initial = methods[0]


class CodeForm(_PlainTextMixin, forms.Form):
    """A current TOTP code, or a recovery code."""

    code = _code_field()


class TotpStartForm(_PlainTextMixin, forms.Form):
    """Start an authenticator enrolment; replacing an active one needs a current code."""

    code = _code_field(_("Code from your current authenticator (or a recovery code)"), required=False)


class EmailConfirmForm(_PlainTextMixin, forms.Form):
    setup_token = forms.CharField(max_length=MAX_TOKEN_LENGTH, widget=forms.HiddenInput)
    code = _code_field(_("Code from the email"))


class PasswordForm(_PlainTextMixin, forms.Form):
    password = forms.CharField(
        label=_("Password"),
        max_length=MAX_PASSWORD_LENGTH,
        strip=False,
        required=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


class TwoFactorEmailGuardMixin:
    """For a form that edits a user (a ModelForm): refuse to remove the address of email-only 2FA.

    Put it first among the bases of your profile or user admin form
    (``secure_admin_login`` does it for the admin's user form). Without it the
    save itself is refused (``services.two_factor.check_email_change``, from
    the user model's ``pre_save``), with an exception rather than a message.
    """

    def clean(self) -> dict[str, Any]:
        from .services.two_factor import EmailRequiredForTwoFactor, email_removal_refused

        cleaned: dict[str, Any] = super().clean()  # type: ignore[misc]
        instance = getattr(self, "instance", None)
        if instance is None or getattr(instance, "pk", None) is None:
            return cleaned
        field = instance.get_email_field_name() if hasattr(instance, "get_email_field_name") else "email"
        if field not in cleaned:
            return cleaned
        stored = type(instance)._base_manager.filter(pk=instance.pk).values_list(field, flat=True).first()
        if stored and email_removal_refused(instance, cleaned.get(field)):
            self.add_error(field, EmailRequiredForTwoFactor())  # type: ignore[attr-defined]
        return cleaned
