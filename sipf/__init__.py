"""sipf: self-iterative process feedback for small language models."""

import logging

__version__ = "0.1.0"

# bitsandbytes warns at import when its optional CPU kernel package is missing; its own
# fallback is what runs on CPU, so the line is noise in every stage's log.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
