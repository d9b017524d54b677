"""The tables of ephemeral_auth.

``EphemeralToken`` and ``RateLimitEvent`` mirror the original application's
``auth_ephemeral_tokens`` and ``auth_rate_limit_events`` (see
docs/data-model.md for each deliberate difference). ``UserTwoFactor`` and
``RecoveryCode`` hold the per-user second-factor state; ``OIDCIdentity``
links a provider's subject to a local user.

Models hold data and queries; policy (who may write what, when) lives in
``ephemeral_auth.services``, which is the only code that writes these tables.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

__all__ = [
    "EphemeralToken",
    "EventType",
    "OIDCIdentity",
    "RateLimitEvent",
    "RecoveryCode",
    "TokenType",
    "UserTwoFactor",
    "WebAuthnCredential",
]


class TokenType(models.TextChoices):
    """Purposes of an ephemeral token; the values are the original application's, exactly."""

    PRE_AUTH = "pre_auth", _("Pending two-factor login")
    OIDC_STATE = "oidc_state", _("OIDC authorization state")
    OIDC_EXCHANGE = "oidc_exchange", _("OIDC exchange for a single-page app")
    PASSWORD_RESET = "password_reset", _("Password reset")
    EMAIL_OTP_SETUP = "email_otp_setup", _("Email code enrolment")
    # The one-time download link; the original application's value is kept for row compatibility.
    SLICER_DOWNLOAD = "slicer_download", _("One-time download link")
    # WebAuthn ceremonies (services/webauthn.py): the raw token is the challenge the authenticator signs.
    WEBAUTHN_REGISTER = "webauthn_register", _("Security key registration")
    WEBAUTHN_LOGIN = "webauthn_login", _("Security key sign-in step")
    PASSKEY_LOGIN = "passkey_login", _("Passkey sign-in")


class EventType(models.TextChoices):
    """Rate-limit buckets; the values are the original application's, exactly."""

    TWO_FA_ATTEMPT = "2fa_attempt", _("Two-factor attempt")
    EMAIL_SEND = "email_send", _("Email code sent")
    # The per-account ceiling: failures from every address together (docs/security.md).
    LOGIN_ATTEMPT = "login_attempt", _("Failed login (per user)")
    LOGIN_IP = "login_ip", _("Failed login (per IP)")
    PASSWORD_RESET_SEND = "password_reset_send", _("Password reset (per email)")
    PASSWORD_RESET_IP = "password_reset_ip", _("Password reset (per IP)")
    # Added after the original application: the primary lock (one account from one address), and the
    # bucket of a browser that completed a login for the account before.
    LOGIN_USER_IP = "login_user_ip", _("Failed login (per user and IP)")
    LOGIN_DEVICE = "login_device", _("Failed login (per known browser)")
    # OIDC sign-ins started per client address: bounds the live oidc_state rows one address holds.
    OIDC_AUTHORIZE = "oidc_authorize", _("OIDC sign-in started (per IP)")
    # Passkey sign-ins started per client address: bounds the live passkey challenges of one address.
    PASSKEY_OPTIONS = "passkey_options", _("Passkey sign-in started (per IP)")


class EphemeralTokenQuerySet(models.QuerySet["EphemeralToken"]):
    def expired(self, now: datetime) -> EphemeralTokenQuerySet:
        return self.filter(expires_at__lte=now)

    def live(self, now: datetime) -> EphemeralTokenQuerySet:
        return self.filter(expires_at__gt=now)


class EphemeralToken(models.Model):
    """A single-use, time-limited token; only its SHA-256 digest is stored."""

    id = models.BigAutoField(primary_key=True)
    # SHA-256 hex digest of the raw token. The raw token is handed out once by
    # the service and never stored, so a database read yields nothing usable.
    # Unique through Meta.constraints rather than unique=True: on PostgreSQL
    # unique=True adds a second, varchar_pattern_ops "_like" index that no
    # query uses (about a fifth of a token row's bytes, docs/deployment.md).
    token = models.CharField(_("token digest"), max_length=64)
    token_type = models.CharField(_("type"), max_length=20, choices=TokenType.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        # Deleting a user deletes their tokens, but by receivers.delete_user_tokens
        # on the token table's own database: the deletion collector would look
        # for tokens on the *user's* database, where (with EPHEMERAL_AUTH_DATABASE)
        # the table does not exist.
        on_delete=models.DO_NOTHING,
        null=True,
        blank=True,
        related_name="ephemeral_tokens",
        # Served by the (user, token_type) index below.
        db_index=False,
        # No database-level constraint: with EPHEMERAL_AUTH_DATABASE the table
        # lives on another database than the user table, where such a constraint
        # cannot exist (docs/data-model.md).
        db_constraint=False,
    )
    # oidc_state: slug of the provider that started the flow.
    provider = models.CharField(_("provider"), max_length=64, blank=True, default="")
    # oidc_state: nonce expected in the ID token; PKCE S256 verifier.
    nonce = models.CharField(_("nonce"), max_length=128, blank=True, default="")
    code_verifier = models.CharField(
        _("PKCE code verifier"), max_length=128, blank=True, default=""
    )
    # pre_auth, oidc_state, oidc_exchange: SHA-256 digest of the browser-binding cookie.
    challenge_id = models.CharField(
        _("challenge digest"), max_length=64, blank=True, default=""
    )
    # pre_auth (emailed login code), email_otp_setup: keyed digest of the code.
    code_hash = models.CharField(_("code digest"), max_length=64, blank=True, default="")
    # slicer_download: the one resource this link opens.
    resource = models.CharField(_("resource"), max_length=255, blank=True, default="")
    # pre_auth: comma-separated second-factor methods this login may use;
    # oidc_exchange: "mfa" when the provider asserted multi-factor authentication.
    methods = models.CharField(_("methods"), max_length=64, blank=True, default="")
    # oidc_state: where the browser goes after this flow (validated at issue).
    next_url = models.TextField(_("next URL"), blank=True, default="")
    # oidc_state: "session" or "spa".
    mode = models.CharField(_("mode"), max_length=16, blank=True, default="")
    # pre_auth / email_otp_setup: wrong codes presented against this token.
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    expires_at = models.DateTimeField(_("expires at"))
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    objects = EphemeralTokenQuerySet.as_manager()

    class Meta:
        db_table = "auth_ephemeral_tokens"
        verbose_name = _("ephemeral token")
        verbose_name_plural = _("ephemeral tokens")
        indexes = [
            # Purge: DELETE ... WHERE token_type = %s AND expires_at <= %s.
            models.Index(fields=["token_type", "expires_at"], name="ea_token_type_expires"),
            # Per-user revocation and the user foreign key.
            models.Index(fields=["user", "token_type"], name="ea_token_user_type"),
        ]
        constraints = [
            # Lookups and consumes: WHERE token = %s (equality only).
            models.UniqueConstraint(fields=["token"], name="ea_token_unique"),
        ]

    def __str__(self) -> str:
        # Never the digest: admin pages and logs show this.
        return f"{self.get_token_type_display()} #{self.pk}"

    @property
    def method_list(self) -> list[str]:
        return [m for m in self.methods.split(",") if m]

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at <= now


class RateLimitEventQuerySet(models.QuerySet["RateLimitEvent"]):
    def in_window(self, event_type: str, key: str, since: datetime) -> RateLimitEventQuerySet:
        return self.filter(event_type=event_type, key=key, occurred_at__gt=since)

    def older_than(self, cutoff: datetime) -> RateLimitEventQuerySet:
        return self.filter(occurred_at__lte=cutoff)


class RateLimitEvent(models.Model):
    """One counted event (a failure, a send) for a subject inside a window."""

    id = models.BigAutoField(primary_key=True)
    # Normalised subject: "u:<pk>" for an account, "n:<casefolded name>" for an
    # identifier that names no account, "<account or name>|<ip>" for the pair
    # bucket, "d:<id>" for a known browser, an IP, or a casefolded email (reset).
    # The original application called this column "username"; it holds more than usernames.
    key = models.CharField(_("key"), max_length=254)
    event_type = models.CharField(_("event type"), max_length=20, choices=EventType.choices)
    occurred_at = models.DateTimeField(_("occurred at"), default=timezone.now)

    objects = RateLimitEventQuerySet.as_manager()

    class Meta:
        db_table = "auth_rate_limit_events"
        verbose_name = _("rate-limit event")
        verbose_name_plural = _("rate-limit events")
        indexes = [
            # A window count is one range scan of this index.
            models.Index(fields=["event_type", "key", "occurred_at"], name="ea_event_window"),
            # Purge: DELETE ... WHERE occurred_at <= %s.
            models.Index(fields=["occurred_at"], name="ea_event_occurred"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.key}"


class UserTwoFactor(models.Model):
    """A user's second-factor state: TOTP secret (encrypted) and email codes."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="two_factor",
    )
    # Fernet tokens (ephemeral_auth.crypto); never the plain base32 secret.
    totp_secret = models.TextField(_("TOTP secret (encrypted)"), blank=True, default="")
    # During re-enrolment: the new secret, active only once confirmed, so the
    # current authenticator keeps working until then.
    totp_pending_secret = models.TextField(
        _("pending TOTP secret (encrypted)"), blank=True, default=""
    )
    totp_confirmed_at = models.DateTimeField(_("TOTP confirmed at"), null=True, blank=True)
    # Replay guard: the last accepted time step; only a later one is accepted.
    totp_last_step = models.BigIntegerField(_("last accepted TOTP step"), null=True, blank=True)
    email_enabled = models.BooleanField(_("email codes enabled"), default=False)
    email_confirmed_at = models.DateTimeField(_("email codes confirmed at"), null=True, blank=True)
    # The last change of the active configuration (a factor added, replaced or
    # removed, new recovery codes, an admin reset). Part of the configuration's
    # fingerprint: a change ends every other session of the user.
    changed_at = models.DateTimeField(_("configuration changed at"), null=True, blank=True)
    # The last real second-factor success (a code accepted at login or for a
    # sensitive change). Only failures after it count against the 2FA budget;
    # nothing else writes it, so no other save can reset the budget.
    last_verified_at = models.DateTimeField(_("last verified at"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("two-factor settings")
        verbose_name_plural = _("two-factor settings")

    def __str__(self) -> str:
        return f"two-factor settings of user #{self.pk}"

    @property
    def totp_enabled(self) -> bool:
        return bool(self.totp_secret) and self.totp_confirmed_at is not None


class RecoveryCode(models.Model):
    """One recovery code, stored as a keyed digest, consumed by a conditional delete."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="recovery_codes"
    )
    code_hash = models.CharField(_("code digest"), max_length=64)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("recovery code")
        verbose_name_plural = _("recovery codes")
        constraints = [
            models.UniqueConstraint(fields=["user", "code_hash"], name="ea_recovery_unique"),
        ]

    def __str__(self) -> str:
        return f"recovery code #{self.pk}"


class OIDCIdentity(models.Model):
    """Links an OpenID provider's subject to a local user.

    An identity is the pair (issuer, ``sub``), compared byte for byte: the
    unique ``subject_key`` is the SHA-256 of both, so no database collation
    can equate "ALICE", "alice " or "álice" with "alice". ``provider`` is the
    slug of the configuration the identity signed in through.
    """

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oidc_identities"
    )
    provider = models.CharField(_("provider"), max_length=64)
    # The issuer of the ID tokens ("" for links made before 0005, until their next sign-in).
    issuer = models.CharField(_("issuer"), max_length=512, blank=True, default="")
    subject = models.CharField(_("subject"), max_length=255)
    # services.oidc.identity_key(issuer, subject): hex SHA-256, compared byte for byte.
    subject_key = models.CharField(_("identity key"), max_length=64)
    email = models.EmailField(_("email at the provider"), max_length=254, blank=True, default="")
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    last_login_at = models.DateTimeField(_("last login at"), null=True, blank=True)

    class Meta:
        verbose_name = _("OIDC identity")
        verbose_name_plural = _("OIDC identities")
        constraints = [
            models.UniqueConstraint(fields=["subject_key"], name="ea_oidc_subject_key_unique"),
            models.UniqueConstraint(fields=["provider", "user"], name="ea_oidc_user_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} identity of user #{self.user_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # A row made by hand (the shell, a fixture, a data migration) gets its key too.
        if not self.subject_key:
            if self.issuer:
                self.subject_key = self.key_for(self.issuer, self.subject)
            else:
                self.subject_key = self.legacy_key_for(self.provider, self.subject)
        super().save(*args, **kwargs)

    @staticmethod
    def key_for(issuer: str, subject: str) -> str:
        """Return the key of the identity (issuer, ``sub``): hex SHA-256, compared byte for byte."""
        return hashlib.sha256(f"iss:{issuer.rstrip('/')}\x00{subject}".encode()).hexdigest()

    @staticmethod
    def legacy_key_for(provider: str, subject: str) -> str:
        """The key of a link whose issuer is not known yet (made before migration 0005): (provider slug, ``sub``)."""
        return hashlib.sha256(f"provider:{provider}\x00{subject}".encode()).hexdigest()


class WebAuthnCredential(models.Model):
    """A registered WebAuthn credential (security key or passkey) of a user.

    Nothing here is secret (a public key and its metadata), but the admin
    shows no key material. ``credential_key`` (hex SHA-256 of the credential
    id) is the unique lookup column: a unique index on a binary column is not
    portable (MySQL/MariaDB cannot index a BLOB without a prefix), and a
    digest is compared byte for byte whatever the collation.
    """

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webauthn_credentials"
    )
    credential_id = models.BinaryField(_("credential id"), max_length=1023)
    credential_key = models.CharField(_("credential id digest"), max_length=64)
    # The COSE_Key of the credential, as the authenticator sent it.
    public_key = models.BinaryField(_("public key (COSE)"), max_length=16384)
    # The user.id the authenticator stored with a discoverable credential (the userHandle).
    user_handle = models.BinaryField(_("user handle"), max_length=64)
    sign_count = models.BigIntegerField(_("signature counter"), default=0)
    aaguid = models.CharField(_("AAGUID"), max_length=36, blank=True, default="")
    # Comma-separated AuthenticatorTransport values reported at registration (usb,nfc,ble,hybrid,internal).
    transports = models.CharField(_("transports"), max_length=128, blank=True, default="")
    backup_eligible = models.BooleanField(_("backup eligible"), default=False)
    backup_state = models.BooleanField(_("backed up"), default=False)
    # True: a discoverable credential (resident key, a passkey); None: the client did not say.
    discoverable = models.BooleanField(_("discoverable (passkey)"), null=True, blank=True)
    user_verified_at_registration = models.BooleanField(_("user verified at registration"), default=False)
    name = models.CharField(_("name"), max_length=64)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True)

    class Meta:
        db_table = "auth_webauthn_credentials"
        verbose_name = _("WebAuthn credential")
        verbose_name_plural = _("WebAuthn credentials")
        constraints = [
            models.UniqueConstraint(fields=["credential_key"], name="ea_webauthn_credential_unique"),
        ]

    def __str__(self) -> str:
        return f"WebAuthn credential #{self.pk} of user #{self.user_id}"

    @property
    def transport_list(self) -> list[str]:
        return [t for t in self.transports.split(",") if t]
