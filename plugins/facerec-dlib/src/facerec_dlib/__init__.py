"""facerec-dlib: dlib's ResNet-29 face descriptor as a facerec plugin (no dlib needed at run time).

Keep this file light: the registry imports it to check FACEREC_API.
"""

#: The facerec API major version this plugin is built for.
FACEREC_API = 1
