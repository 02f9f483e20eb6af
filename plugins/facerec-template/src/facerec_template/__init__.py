"""A template facerec plugin. Keep this file light: the registry imports it to check FACEREC_API."""

#: The facerec API major version this plugin is built for.
FACEREC_API = 1
