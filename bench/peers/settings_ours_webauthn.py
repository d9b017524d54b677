from bench.peers.settings_ours import *  # noqa: F403

# The relying party is the test client's host; its origin is http://testserver.
EPHEMERAL_AUTH_WEBAUTHN_RP_ID = "testserver"
EPHEMERAL_AUTH_WEBAUTHN_ORIGINS = ["http://testserver"]
EPHEMERAL_AUTH_PASSKEY_LOGIN = True
