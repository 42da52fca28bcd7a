"""Adapters to other tools (lmms-eval); each imports its tool only when used."""
