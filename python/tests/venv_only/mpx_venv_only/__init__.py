"""Installed only in the tests' plain venv (scripts/plain-venv.sh)."""

import sys

#: The environment this copy was imported from.
PREFIX = sys.prefix
