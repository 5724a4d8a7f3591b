"""decodekit: decode language models faster with nothing lost, better, and structured."""

from decodekit.api import Decoder, generate, stream
from decodekit.errors import DecodekitError
from decodekit.sampling import SamplingConfig
from decodekit.types import Draft, GenerationResult, GenerationStats, VerifyResult

__version__ = "0.1.0"

__all__ = [
    "DecodekitError",
    "Decoder",
    "Draft",
    "GenerationResult",
    "GenerationStats",
    "SamplingConfig",
    "VerifyResult",
    "__version__",
    "generate",
    "stream",
]
