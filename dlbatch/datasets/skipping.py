"""Skipping the samples of a dataset whose files cannot be read: the warning that says so,
its list of files and reasons, and checking many samples' files at once.

`read_dl_dataset(..., skip_bad_images=True)` and `DLDataset.skip_bad_samples` use these; the
checks themselves are the ones reading a sample makes (DLDataset)."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

LISTED_SKIPS = 20  # bad samples a warning or error lists one by one; the rest are counted
CHECK_THREADS = 4  # images checked at once (Pillow decodes without the GIL); bounds the memory too


class DLDataWarning(UserWarning):
    """Samples of a dataset were skipped because their files cannot be used (see
    `DLDataset.skip_bad_samples`); filter it with `warnings.simplefilter("ignore", DLDataWarning)`
    or turn it into an error with "error".

    Examples:
        >>> import warnings
        >>> from dlbatch.datasets import read_dl_dataset, write_synthetic_dataset
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("error", DLDataWarning)  # a skipped file stops the program
        ...     quiet = read_dl_dataset(write_synthetic_dataset("classification", "quiet", num_samples=2),
        ...                             skip_bad_images=True)
        >>> len(quiet)
        2
    """


def describe_skipped(reasons, limit: int = LISTED_SKIPS) -> str:
    """The reasons as indented lines, the first `limit` of them and then how many more.

    Args:
        reasons: one message per skipped sample (naming its file).
        limit: how many to list.

    Returns:
        The lines joined with newlines.

    Examples:
        >>> print(describe_skipped(["a.png: truncated", "b.png: not an image", "c.png: 16-bit"], limit=2))
          a.png: truncated
          b.png: not an image
          and 1 more
    """
    reasons = list(reasons)
    lines = [f"  {r}" for r in reasons[:limit]]
    if len(reasons) > limit:
        lines.append(f"  and {len(reasons) - limit} more")
    return "\n".join(lines)



def check_in_threads(check: Callable, records: Sequence) -> list:
    """`check(record)` for every record, up to CHECK_THREADS at once, results in record order.

    Args:
        check: returns why a record cannot be used, or None.
        records: the records to check.

    Returns:
        One result per record, in order.

    Examples:
        >>> check_in_threads(lambda n: None if n % 2 else f"{n} is even", [1, 2, 3, 4])
        [None, '2 is even', None, '4 is even']
    """
    threads = max(1, min(CHECK_THREADS, os.cpu_count() or 1, len(records)))
    if threads == 1:
        return [check(r) for r in records]
    with ThreadPoolExecutor(threads, thread_name_prefix="dlbatch-check") as pool:
        return list(pool.map(check, records))
