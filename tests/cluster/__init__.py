"""Cluster suites (CI stage ``cluster``): MariaDB Galera, PostgreSQL with Patroni failover, several app hosts.

Run with ``pytest -m cluster tests/cluster`` after the scripts in ``.ci/cluster/``
have started what a suite needs; see docs/clusters.md.
"""
