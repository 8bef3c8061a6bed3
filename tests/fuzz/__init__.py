"""A fuzzing harness for the hub (hardening issue 19): hostile payloads over real traffic.

It drives a real hub process on loopback (``tests/processes.py``) with

- every client -> hub Socket.IO event of ``docs/protocol.md``, from sockets of
  several roles in two centers, each joined where it may be: a valid payload
  mutated hostilely (a field dropped, an unknown field, a wrong type, an
  enum value it does not have, non-finite numbers, lone surrogates, NUL,
  nesting past 254 levels, huge strings, bad JSON Patch paths, several
  arguments, binary attachments, a payload that is not an object), sent as
  raw frames, several in flight at once;
- raw frames that are not Socket.IO packets, or broken ones;
- every REST operation of the hub's own OpenAPI document
  (``/api/v1/openapi.json``): path parameters, queries and bodies generated
  from its schemas, valid ones and hostile ones, with tokens of every role
  of two centers, none, and broken ones.

Properties, checked after each batch of payloads:

1. no ``INTERNAL`` ack, no 5xx, and every REST answer is one the document
   describes (``tests/contract.py``);
2. everything the hub sends back is strict JSON (RFC 8259: no ``NaN``,
   ``Infinity`` or lone surrogate), as a stock JavaScript client needs;
3. a payload the contract refuses is refused (``ok: false``);
4. a batch that was refused throughout changes nothing: the REST reads of
   both centers' sessions, enrollments, canvases, help and notes and a fresh
   observer's ``session:join`` ack are the same before and after;
5. the hub's log gains no traceback and no ERROR line.

At the end a stock JavaScript client (``tests/js/fuzz_watch.mjs``), which
listened as the tutor throughout, must not have been disconnected (its
answer to a packet it cannot parse), and the canvases it gets on a fresh join
must equal what REST returns and what a fresh Python join returns.

``tests/test_fuzz.py`` runs a short run in the suite; the long run is

    flock /tmp/bench.lock .venv/bin/python -m tests.fuzz --per-event 10000

(see ``docs/reliability.md``). Hypothesis draws every payload; batches are
bounded in count and each wait in time; only loopback traffic.
"""
