"""User-facing errors: the CLI prints them as one line and exits non-zero, never a traceback."""


class FacerecError(Exception):
    """Base of every error caused by user input (names, options, files); message is one line."""


class UnknownComponentError(FacerecError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DuplicateComponentError(FacerecError):
    pass


class ComponentLoadError(FacerecError):
    pass


class ParameterError(FacerecError, ValueError):
    pass


class WeightsError(FacerecError):
    pass


class DataError(FacerecError):
    pass


__all__ = [
    "FacerecError",
    "UnknownComponentError",
    "DuplicateComponentError",
    "ComponentLoadError",
    "ParameterError",
    "WeightsError",
    "DataError",
]
