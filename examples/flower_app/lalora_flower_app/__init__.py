"""The lalora-lite Flower App: see apps.py."""
