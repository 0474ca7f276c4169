"""LangGraph workflows: conversation memory and multi-step flows, streamed token by token.

An app is bound to a workflow (``orchestra apps update APP --workflow NAME``). ``direct`` is no
graph at all: ``services.ask`` calls the upstream itself. Every other name is a LangGraph
``StateGraph`` defined here, run by ``runner.Runner`` (the ``WorkflowRunner`` of
``protocol.py``), which ``services.ask`` calls instead of the upstream and reads like one: a
``ChunkStream``. So quotas, usage, records and the SSE contract are the direct path's.

- ``state.py``: ``ThreadState`` (checkpointed) and ``RunContext`` (the request, the upstream,
  the key: never saved).
- ``answer.py``: the node that calls the upstream stream and writes each chunk to LangGraph's
  stream writer as it arrives (the run is read in ``custom`` stream mode).
- ``conversation.py``, ``moderated.py``: the workflows. ``history.py``: the token budget.
- ``checkpoints.py``: LangGraph's checkpointer on the gateway's own database.
- ``streams.py``: a run as a ``ChunkStream`` (its own task, a channel, cancellation).

Adding a workflow: write ``gateway/flows/<name>.py`` with ``build(checkpointer) -> Graph`` (a
``StateGraph(ThreadState, context_schema=RunContext)``, usually ending with ``answer.answer``;
a node that refuses raises a ``GatewayError``) and ``KEEPS_THREADS``; add one line to
``runner.DEFINITIONS`` and the name to ``core.validation.WORKFLOWS``; add
``tests/gateway/flows/test_<name>.py``. ``moderated.py`` (40 lines) is the model to copy.
"""
