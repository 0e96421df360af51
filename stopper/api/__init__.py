"""HTTP entry points: they parse, dispatch, and answer; the rules live in `stopper.app`."""
