"""decodekit: decode language models faster with nothing lost, better, and structured."""

from decodekit.api import Decoder, generate, score_choices, stream
from decodekit.constrained_sampling import sample_constrained
from decodekit.errors import DecodekitError
from decodekit.sampling import SamplingConfig
from decodekit.types import Draft, GenerationResult, GenerationStats, VerifyResult
from decodekit.version import __version__

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
    "sample_constrained",
    "score_choices",
    "stream",
]
