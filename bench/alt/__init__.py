"""Support for bench/alternatives_peers.py: settings, counting caches, the measured cases."""
