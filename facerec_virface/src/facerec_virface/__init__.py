"""facerec plugin: VirFace, learning from unlabeled shallow data (VirClass, VirInstance)."""

#: The facerec API major version this plugin is built for (checked by core's registry).
FACEREC_API = 1
