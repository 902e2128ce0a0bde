"""The label map: class names in class-id order, saved beside every model."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from mangakd.data import DataError, Example, _error, _read_utf8, write_text_atomic


class LabelMap:
    """The class names of a model, in class-id order.

    ``from_labels`` sorts the names, so the same training labels give the same
    ids on every run. The map is saved as ``labels.json`` next to every model,
    because class ids mean nothing without it.

    Parameters
    ----------
    names : sequence of str
        Class names in id order: ``names[i]`` is class ``i``.
    """

    def __init__(self, names: Sequence[str]) -> None:
        names = tuple(names)
        if not names:
            raise DataError("a label map needs at least one label")
        for name in names:
            if not isinstance(name, str) or not name.strip():
                raise DataError(f"invalid label {name!r} in label map. Labels must be non-empty strings")
        repeated = sorted(name for name, count in Counter(names).items() if count > 1)
        if repeated:
            raise DataError(f"label map lists {repeated} more than once. Each label must appear once")
        self._names = names
        self._ids = {name: index for index, name in enumerate(names)}

    @classmethod
    def from_labels(cls, labels: Iterable[str]) -> LabelMap:
        """Build a map of the distinct labels, sorted."""
        return cls(sorted(set(labels)))

    @classmethod
    def from_examples(cls, examples: Iterable[Example]) -> LabelMap:
        """Build a map of the distinct labels of ``examples`` (the train split), sorted."""
        return cls.from_labels(example.label for example in examples)

    @property
    def names(self) -> list[str]:
        """Class names in id order (a copy)."""
        return list(self._names)

    @property
    def id2label(self) -> dict[int, str]:
        """Class id -> name, the form of ``transformers`` model configs."""
        return dict(enumerate(self._names))

    @property
    def label2id(self) -> dict[str, int]:
        """Class name -> id."""
        return dict(self._ids)

    def __len__(self) -> int:
        return len(self._names)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelMap) and self._names == other._names

    def __hash__(self) -> int:
        return hash(self._names)

    def __repr__(self) -> str:
        return f"LabelMap({len(self)} labels: {list(self._names[:3])}{'...' if len(self) > 3 else ''})"

    def encode(self, labels: Iterable[str]) -> np.ndarray:
        """Map label names to class ids.

        Returns
        -------
        np.ndarray of int64, shape (n_labels,)
        """
        ids = []
        for label in labels:
            if label not in self._ids:
                raise DataError(
                    f"label {label!r} is not in the label map ({len(self)} labels). "
                    "Remove the example, or retrain with examples of this label"
                )
            ids.append(self._ids[label])
        return np.asarray(ids, dtype=np.int64)

    def decode(self, ids: Iterable[int] | np.ndarray) -> list[str]:
        """Map class ids, shape (n,), to label names."""
        names = []
        for class_id in np.asarray(ids).reshape(-1).tolist():
            if not isinstance(class_id, int) or not 0 <= class_id < len(self):
                raise DataError(f"class id {class_id!r} is out of range. Valid ids are 0..{len(self) - 1}")
            names.append(self._names[class_id])
        return names

    def to_json(self) -> str:
        """Serialise as ``{"labels": [name, ...]}`` in id order."""
        return json.dumps({"labels": list(self._names)}, ensure_ascii=False, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, *, source: str = "<string>") -> LabelMap:
        """Parse the output of ``to_json``. ``source`` is the origin that errors name."""
        fix = 'A label map is a JSON object {"labels": ["name", ...]} as written by LabelMap.save'
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise _error(source, error.lineno, f"invalid JSON ({error.msg})", fix) from None
        if not isinstance(document, dict) or not isinstance(document.get("labels"), list):
            raise _error(source, None, "no list under the key 'labels'", fix)
        return cls(document["labels"])

    def save(self, path: str | Path) -> None:
        """Write the map to ``path`` as JSON, atomically."""
        write_text_atomic(Path(path), self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> LabelMap:
        """Read a map written by ``save``."""
        return cls.from_json(_read_utf8(Path(path)), source=str(path))
