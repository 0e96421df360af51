"""Pure business logic of Stopper: no I/O, and no imports from the rest of `stopper`."""
