"""Demo app: a files page that hands out one-time download links."""
