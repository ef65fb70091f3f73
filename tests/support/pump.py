"""The streaming pump's test doubles: an ``AnswerJob`` fed by hand (its producer never runs),
a chat wire, and a socket that keeps each write apart."""

from __future__ import annotations

from glm_proxy.protocol.formats.openai import ChatWire
from glm_proxy.services.answer import AnswerJob


class HandFedJob(AnswerJob):
    def __init__(self) -> None:
        super().__init__(services=None, candidates=(), request=None)
        self.cancels = 0
        self.conversation_id = "conv1"

    def cancel(self) -> None:
        self.cancels += 1


def wire() -> ChatWire:
    return ChatWire(model="glm-4", created=1, prompt_text="hi", response_id=lambda: "c1")



class RecordingSocket:
    """A connection that keeps each ``send`` apart, to see what went out in one write."""

    def __init__(self) -> None:
        self.sends: list[bytes] = []

    def send(self, data) -> int:
        self.sends.append(bytes(data))
        return len(data)

    def sendall(self, data) -> None:
        self.sends.append(bytes(data))

