"""The services: the only code that writes ephemeral_auth's tables."""
