"""Template tags of ephemeral_auth."""
