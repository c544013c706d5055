"""Fakes, fixtures and helpers shared by the tests; test modules import from here, never from each other."""
