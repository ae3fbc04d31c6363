"""Live label propagation between rounds: the live head and the child process that runs it for the dock."""
