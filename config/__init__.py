"""Settings, constants, logging and the core universe."""
