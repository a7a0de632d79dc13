"""A GitHub REST API test double on loopback (see fixtures.py for how tests use it)."""
