"""Core subcommands of facerun, registered through the facerec.commands entry points (loaded lazily)."""
