"""release-guard: stop a release from shipping what it must not ship."""

__version__ = "0.1.0"
