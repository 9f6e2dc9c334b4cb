"""Composition root, CLI, replay server and deployment files."""
