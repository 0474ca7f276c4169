"""Tests of gateway.flows (the LangGraph workflows)."""

import warnings

with warnings.catch_warnings():
    # bpe_openai (the tokenizer behind the token budget) warns when it is first imported (it
    # reads its tables with importlib.resources.open_binary); import it once, here, quietly.
    warnings.simplefilter("ignore", DeprecationWarning)
    import bpe_openai  # noqa: F401
