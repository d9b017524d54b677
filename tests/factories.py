"""factory-boy factories. Tokens are created through the service, never by hand."""

from __future__ import annotations

import django
import factory
from django.contrib.auth import get_user_model

PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


# Two-factor enrolment helpers (docs/two-factor.md). Secrets go through the
# same encryption as the service uses; recovery codes through the service.


def enrol_totp(user, *, secret=None, confirmed_at=None, last_step=None):
    """Give ``user`` a confirmed authenticator; return its base32 secret."""
    import pyotp
    from django.utils import timezone

    from ephemeral_auth import crypto
    from ephemeral_auth.models import UserTwoFactor

    secret = secret or pyotp.random_base32()
    UserTwoFactor.objects.update_or_create(
        user=user,
        defaults={
            "totp_secret": crypto.encrypt(secret),
            "totp_confirmed_at": confirmed_at or timezone.now(),
            "totp_last_step": last_step,
        },
    )
    return secret


def enable_email_codes(user, *, confirmed_at=None):
    """Turn email codes on for ``user`` (as a confirmed enrolment would)."""
    from django.utils import timezone

    from ephemeral_auth.models import UserTwoFactor

    UserTwoFactor.objects.update_or_create(
        user=user, defaults={"email_enabled": True, "email_confirmed_at": confirmed_at or timezone.now()}
    )


def totp_code(secret, when, *, offset=0):
    """Return the TOTP code of ``secret`` at instant ``when`` (shifted by ``offset`` steps)."""
    import pyotp

    totp = pyotp.TOTP(secret)
    return totp.generate_otp(totp.timecode(when) + offset)


def login_verified(client, user):
    """Log ``client`` in as ``user`` with a session that passed 2FA for the user's current configuration."""
    from ephemeral_auth import clock
    from ephemeral_auth.auth.session import SESSION_KEY
    from ephemeral_auth.services.factors import load_state

    client.force_login(user)
    session = client.session
    state = load_state(user)
    session[SESSION_KEY] = {
        "u": str(user.pk), "f": state.fingerprint, "v": True, "e": state.enabled, "t": int(clock.now().timestamp()),
    }
    session.save()
    return client


def use_mail_backend(settings, backend):
    """Send Django's mail through ``backend`` (a dotted path) for one test: MAILERS from Django 6.1 on."""
    if django.VERSION >= (6, 1):
        settings.MAILERS = {"default": {"BACKEND": backend}}
    else:
        settings.EMAIL_BACKEND = backend


def shown_errors(response):
    """The error texts an HTML page shows: its error lists' items and its ``<p class="error">`` paragraphs."""
    import html
    import re

    page = response.content.decode()
    texts = []
    for block in re.findall(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', page, re.S):
        texts += re.findall(r"<li>(.*?)</li>", block, re.S)
    texts += re.findall(r'<p class="error"[^>]*>(.*?)</p>', page, re.S)
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", "", text)).split()) for text in texts]
