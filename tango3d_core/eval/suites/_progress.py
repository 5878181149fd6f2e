"""tqdm progress bars on stderr, switched off in one place."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress_bar(items: Iterable[T], *, total: int | None, desc: str, enable: bool = True) -> Iterator[T]:
    """``items`` wrapped in a tqdm bar on stderr (a plain iterator when ``enable`` is False)."""
    if not enable:
        yield from items
        return
    from tqdm.auto import tqdm

    with tqdm(items, total=total, desc=desc, unit="shape", file=sys.stderr, dynamic_ncols=True) as bar:
        yield from bar
