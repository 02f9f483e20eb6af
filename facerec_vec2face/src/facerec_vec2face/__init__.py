"""facerec plugin: Vec2Face, face images generated from identity vectors."""

#: The facerec API major version this plugin is built for (checked by core's registry).
FACEREC_API = 1
