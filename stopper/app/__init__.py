"""Use cases: one message, one unit of work, against the ports they own."""
