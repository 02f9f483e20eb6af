"""facerec plugin: DVG-Face, dual generation for heterogeneous NIR-VIS face recognition (LightCNN-29 v2)."""

#: The facerec API major version this plugin is built for (checked by core's registry).
FACEREC_API = 1
