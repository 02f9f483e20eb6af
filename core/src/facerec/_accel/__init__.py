"""Private speed machinery that earned its place against the tools users pick (see docs/benchmarks.md).
Nothing here is public API: callers go through ``facerec.metrics.Gallery`` / ``facerec.metrics``."""
