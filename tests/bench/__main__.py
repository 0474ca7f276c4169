"""``python -m tests.bench``: see tests/bench/README.md."""

from tests.bench.runner import main

raise SystemExit(main())
