"""The runner: pull records of one revision from JetStream and settle each exactly once.

`settle.Settler.settle` is the one place where delivery is decided, and it reads like the guarantee:

- the business key is claimed in the key store first (create-if-absent, with a lease):
  done before                      -> ack, counted as a duplicate, no effect;
  claimed by a record in flight    -> nak with a short delay (not a failure), then a duplicate
                                      once the other record completed, or ours once it did not;
- completed                        -> key marked done, then ack (only effects mark a key done);
- filtered                         -> ack; the key is released for the next record with it;
- parked for approval, permanent   -> exception stream (original bytes), then ack;
- transient failure, deliveries left -> nak with the target's Retry-After or backoff;
- transient failure, last delivery -> dead-letter stream (original bytes), then ack;
- any exception nobody expected    -> exception stream as InternalError (original bytes, the
                                      error's first line, no stack trace), then ack.

While a record works, its delivery is kept in progress and its key's lease renewed, so a call
slower than ackWait is never run twice in parallel. Every ack comes after the record's side
effects and after its exception or dead letter has a PubAck; a crash anywhere before the ack
means a redelivery, which finds the key claimed (it waits) or done (a duplicate). A record
JetStream gives up on without a settle (a runner kept crashing on it, or lost NATS) is named by
a max-delivery advisory, which `advisories` turns into a dead letter with its original bytes.

Modules: `process` (the process: pulling, health, heartbeats), `settle` (one delivery),
`advisories` (records out of deliveries).
"""

from onceflow_runner.runner.process import Runner, run_until_signalled

__all__ = ["Runner", "run_until_signalled"]
