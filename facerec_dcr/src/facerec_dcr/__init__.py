"""facerec plugin: DCR, deep coupled ResNet for low-resolution face recognition."""

#: The facerec API major version this plugin is built for (checked by core's registry).
FACEREC_API = 1
