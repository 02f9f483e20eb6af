"""Modality (VIS/NIR/...) of an image-list line, from a column or a regular expression."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ...api import MODALITIES
from ...errors import DataError, ParameterError


def _modality_names(values: str | Sequence[str]) -> list[str]:
    names = [v.strip().upper() for v in (values.split(",") if isinstance(values, str) else values)]
    bad = [n for n in names if n not in MODALITIES]
    if bad or not names:
        raise ParameterError(f"modality_values must name {'/'.join(MODALITIES)} per column value, got {values!r}")
    return names


class ModalityRule:
    """Modality of a list line from a column or a regular expression (never a fixed substring).

    * an int (or digits): that whitespace column holds the modality; its text is ``VIS``/``NIR``
      or a number indexing ``values`` (DVG's ``path label domain`` with 0 = NIR, 1 = VIS is
      ``ModalityRule(2, "NIR,VIS")``);
    * a regex: searched in the path; with a group, the group's text is mapped as a column value;
      without one, a match means NIR and no match VIS.
    """

    def __init__(self, rule: int | str, values: str | Sequence[str] = "VIS,NIR"):
        self.values = _modality_names(values)
        self.column: int | None = None
        self.regex: re.Pattern[str] | None = None
        if isinstance(rule, int) or (isinstance(rule, str) and rule.strip().isdigit()):
            self.column = int(rule)
            if self.column < 1:
                raise ParameterError(f"modality_rule column must be >= 1 (column 0 is the path), got {rule}")
        else:
            try:
                self.regex = re.compile(str(rule))
            except re.error as exc:
                raise ParameterError(f"modality_rule {rule!r} is not a valid regular expression: {exc}") from None

    def _value(self, text: str, where: str) -> int:
        t = text.strip().upper()
        if t in MODALITIES:
            return MODALITIES.index(t)
        try:
            return MODALITIES.index(self.values[int(float(t))])
        except (ValueError, IndexError):
            raise DataError(
                f"{where}: modality value {text!r} is neither VIS/NIR nor an index into {','.join(self.values)}"
            ) from None

    def __call__(self, path: str, columns: Sequence[str], where: str) -> int:
        if self.column is not None:
            if self.column >= len(columns):
                raise DataError(f"{where}: no column {self.column} for the modality (line has {len(columns)})")
            return self._value(columns[self.column], where)
        assert self.regex is not None
        m = self.regex.search(path)
        if m is None:
            return 0
        if m.groups():
            return self._value(m.group(1) or "", where)
        return 1
