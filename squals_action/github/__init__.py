"""Squals on GitHub: events to intents, the PyGithub client, the runner, the real pipeline."""
