"""Empty stand-in: CORL imports d4rl only to register envs; gym shim below serves the data."""
