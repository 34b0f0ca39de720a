"""Create the golden vault vectors in ``tests/vectors/v2/`` (format version 2, §13).

Run once, by hand, when a new vector set is wanted; never from a test::

    python tests/vectors/make_vectors_v2.py            # writes tests/vectors/v2/
    python tests/vectors/make_vectors_v2.py --out DIR  # somewhere else

The same messages, accounts and commits as ``make_vectors.py`` (its version 1 vault is in
``tests/vectors/v1/``), in a vault of format version 2: every pack is ``PVPACK02`` (each
frame's offset and length, and the trailer's, authenticated, docs/format.md §6.1).
``expected.json`` maps every message id (hex) to the SHA-256 of its bytes.
``tests/unit/vault/test_vectors.py`` reads a copy of the committed output on every run.
The directory must not exist (or be empty): vectors are never regenerated in place.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.vectors.make_vectors import main

    raise SystemExit(main(version=2, description=__doc__))
