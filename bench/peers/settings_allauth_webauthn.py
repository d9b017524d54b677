from bench.peers.settings_allauth import *  # noqa: F403

# WebAuthn beside TOTP and recovery codes, passkey sign-in on (allauth's mfa settings).
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
MFA_PASSKEY_LOGIN_ENABLED = True
# The test client's origin is http://testserver: fido2's default rule wants https.
MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = True
