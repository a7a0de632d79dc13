"""pytest fixtures for the GitHub double (`bot.double`): see fixtures.py."""
