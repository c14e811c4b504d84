"""OpenAI's wire format and the faults fake engines put on it, shared by the embedded engine, the
simulator, the gateway's Triton translation and the fakes. A leaf: it imports nothing else of
Wavefleet's, so any package can use it without dragging another along.

    answer = Answer("m", chat=True)
    sse_event(answer.chunk("Hi", role=True))     # b'data: {"id":"chatcmpl-…",…}\\n\\n'
    DONE                                         # b'data: [DONE]\\n\\n'
    Fault.CUT.meaning                            # 'the connection drops before the answer ends …'
"""

from wavefleet.wire.bodies import Answer, error_body, model_card, model_list, new_id, token_usage
from wavefleet.wire.faults import Fault
from wavefleet.wire.sse import DONE, PING, sse_event

__all__ = [
    "Answer",
    "DONE",
    "Fault",
    "PING",
    "error_body",
    "model_card",
    "model_list",
    "new_id",
    "sse_event",
    "token_usage",
]
