"""Orchestra's benchmark: the same load direct to the fake OpenAI server and through the gateway.

Run it with ``.venv/bin/python -m tests.bench`` (see ``tests/bench/README.md``). Nothing in this
package is named ``test_*.py``, so pytest never collects it.
"""
