"""The `sendEdi` step: hand a record to an EDI partner's pod, which sends it as an 855, 856 or 810.

Why the step only hands over: the partner's pod holds the SFTP credentials, the envelope and the
control number allocator, so every Integration that sends to one partner shares one sender and one
number sequence (docs/edi.md, "Sending documents"). The hand-over is a JetStream publish keyed by
business key and step, and the pod keys the document by the business key again in its KV bucket:
a redelivered record never sends a second document. A record that cannot make the document comes
back as an exception of this Integration and step, naming the field.
"""

from __future__ import annotations

from onceflow_runner.contract.plan import StepPlan
from onceflow_runner.engine.outcome import RecordOutcome
from onceflow_runner.engine.steps._kind import RecordRun, StepRunner

__all__ = ["SEND_EDI"]


def _expressions(step: StepPlan) -> list[str]:
    return [step.send_edi.from_] if step.send_edi and step.send_edi.from_ else []


async def _run(step: StepPlan, run: RecordRun) -> RecordOutcome | None:
    block = step.send_edi
    if block is None:
        return None
    ctx = run.context
    data = await run.evaluate(block.from_, step=step.name, what="from") if block.from_ else ctx["record"]
    key = f"{ctx['meta']['businessKey']}/{step.name}"
    await run.events.hand_over_edi(block.connector, block.document, data, step=step.name, msg_id=key, meta=ctx["meta"])
    return None


SEND_EDI = StepRunner("sendEdi", expressions=_expressions, run=_run)
