"""What happens to a frame: verify, deduplicate, open or join an incident, commit and ACK.

One module per stage (verify, dedupe, incident, commit; counter_trouble and dispatch_body
beside them) driven by ``processor``. The names here are the pipeline's interface for the
ingests, the daemon and the tests: ``from panicgw import pipeline`` and
``pipeline.Frame``, ``pipeline.Processor``, ``pipeline.STORED``...
"""

from panicgw.pipeline.frame import (
    COUNTER_EXHAUSTED,
    DUPLICATE,
    INTERNAL,
    PAYLOAD_ERROR,
    REJECTED,
    REPLAY,
    RESYNC,
    STORED,
    UNKNOWN_DEVICE,
    Frame,
    Outcome,
)
from panicgw.pipeline.processor import Pipeline, Processor
from panicgw.pipeline.rejections import Rejections

__all__ = ["COUNTER_EXHAUSTED", "DUPLICATE", "INTERNAL", "PAYLOAD_ERROR", "REJECTED", "REPLAY",
           "RESYNC", "STORED", "UNKNOWN_DEVICE", "Frame", "Outcome", "Pipeline", "Processor",
           "Rejections"]
