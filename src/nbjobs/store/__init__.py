"""Persistence of the domain records: SQL stores (SQLite embedded, PostgreSQL for clusters).

Only the composition roots (nbjobs.roots) and the CLI maintenance commands import from here.
"""
