"""The simulated world: realistic fraud reports (and, later, institutions) for demos and tests."""
