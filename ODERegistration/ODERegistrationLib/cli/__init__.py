"""The ``oderegistration`` command line: a thin shell around the engine."""
