"""The fake's readable answers (``--answers readable``, the demo's mode): Markdown documents.

Each document has what a Markdown renderer must handle while it streams: a heading, a
paragraph with emphasis, inline code and a link, a list, a table, a fenced code block with a
language and a block quote. The document is chosen from the last user message: the first topic
whose keyword it contains (case-insensitive), otherwise one picked by a hash of the messages,
so the same prompt always gets the same answer. A keyword matches the start of a word
("quotas", "streaming").

An answer streams in small chunks: each chunk is one run of non-space characters with the
whitespace after it (so table rows and code lines arrive piece by piece, as from a model).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from gateway.fakes.prompt import last_user_text

_CHUNK = re.compile(r"\S+\s*|\s+")


@dataclass(frozen=True, slots=True)
class Topic:
    keywords: tuple[str, ...]
    document: str


_STREAMING = """\
## Streaming answers

An answer arrives **token by token** over *Server-Sent Events*: the client shows each `delta` \
as it comes. See the [SSE specification](https://html.spec.whatwg.org/multipage/server-sent-events.html).

- The first event can arrive in milliseconds.
- A `done` event carries the usage.
- An `error` event ends a failed stream.

| Event | When | Carries |
| --- | --- | --- |
| `delta` | each token | the text |
| `done` | at the end | usage, request id |
| `error` | on failure | code, message |

```typescript
for await (const event of client.ask({ prompt: 'Hello' })) {
  if (event.type === 'delta') text += event.text;
}
```

> Tip: render only what changed, not the whole answer per token.
"""

_QUOTAS = """\
### Quotas in one table

Every app has **limits**, checked *before* the upstream is called. A refused request gets \
`429` and a `Retry-After` header.

1. Requests per minute (`rpm`)
2. Tokens per minute (`tpm`)
3. A monthly budget in US dollars

| Limit | Example | Scope |
| --- | ---: | --- |
| rpm | 60 | app or user |
| tpm | 40000 | app or user |
| budget | 25.00 | app |

```bash
orchestra quotas set shop --rpm 60 --tpm 40000
```

> Limits hold across replicas: the counters live in Redis.
"""

_CODE = """\
# A small Python example

Here is a *pure* function with a **docstring** and a test, as asked. Run it with `pytest`.

- It takes a list of scores.
- It returns the share of good ones.
- It never divides by zero.

| Input | Output |
| --- | --- |
| `[1, 1, -1]` | 0.67 |
| `[]` | 0.0 |

```python
def satisfaction(scores: list[int]) -> float:
    \"\"\"The share of scores that are 1.\"\"\"
    return scores.count(1) / len(scores) if scores else 0.0


assert satisfaction([1, 1, -1]) == 2 / 3
```

> Feedback like this feeds `orchestra usage`.
"""

_ORCHESTRA = """\
## What Orchestra does

Orchestra sits **between your Angular app and OpenAI**: the browser never holds a provider \
key, and every request is *metered*. Start with `orchestra demo`, or read the \
[OpenAI API reference](https://platform.openai.com/docs/api-reference).

- Tokens per app, sessions per user
- Quotas, logs and metrics
- A client library for Angular

| Part | Where |
| --- | --- |
| Gateway | `gateway/` |
| CLI | `cli/` |
| Angular library | `frontend/` |

```json
{ "prompt": "Hello", "stream": true }
```

> This is the demo model: answers come from Orchestra's fake, not from a real model.
"""

TOPICS: tuple[Topic, ...] = (
    Topic(("stream", "sse", "event"), _STREAMING),
    Topic(("quota", "limit", "table", "budget"), _QUOTAS),
    Topic(("code", "python", "function", "example"), _CODE),
    Topic(("orchestra", "gateway", "hello"), _ORCHESTRA),
)


def choose(messages: Sequence[Any]) -> int:
    """The index of the topic that answers ``messages``."""
    words = re.findall(r"\w+", last_user_text(messages).lower())
    for index, topic in enumerate(TOPICS):
        if any(word.startswith(topic.keywords) for word in words):
            return index
    canonical = json.dumps(messages, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.blake2b(canonical.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % len(TOPICS)


@cache
def chunks(index: int) -> tuple[str, ...]:
    """Topic ``index``'s document in stream chunks (joined, they are the document)."""
    return tuple(_CHUNK.findall(TOPICS[index].document))
