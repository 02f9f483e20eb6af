"""facerec plugin: VGGFace2 ResNet-50 / SE-ResNet-50 feature extractors converted from Caffe."""

#: The facerec API major version this plugin is built for (checked by core's registry).
FACEREC_API = 1
