"""Prometheus metrics for `GET /metrics`, in a registry of the app's own (two apps in one
process, as in the tests, must not share counters)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from decodekit.server.responses import RequestStats

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TAU_BUCKETS = (1, 1.25, 1.5, 2, 2.5, 3, 4, 6, 8, 12)
RATE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class Metrics:
    def __init__(self):
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("decodekit_requests", "Requests answered, by endpoint and HTTP status.",
                                ["endpoint", "status"], registry=registry)
        self.cancelled = Counter("decodekit_requests_cancelled", "Generations stopped because the client left.",
                                 registry=registry)
        self.prompt_tokens = Counter("decodekit_prompt_tokens", "Prompt tokens of generations that ran.",
                                     registry=registry)
        self.generated_tokens = Counter("decodekit_generated_tokens", "Tokens generated.", registry=registry)
        self.drafted_tokens = Counter("decodekit_draft_tokens", "Draft tokens verified.", registry=registry)
        self.accepted_tokens = Counter("decodekit_accepted_draft_tokens", "Draft tokens accepted.", registry=registry)
        self.steps = Counter("decodekit_steps", "Verification steps (model forwards while decoding).",
                             registry=registry)
        self.tau = Histogram("decodekit_request_tau", "Mean tokens per step (tau), per request.",
                             buckets=TAU_BUCKETS, registry=registry)
        self.acceptance = Histogram("decodekit_request_acceptance_rate", "Accepted over drafted tokens, per request "
                                    "that drafted.", buckets=RATE_BUCKETS, registry=registry)
        self.queue_depth = Gauge("decodekit_queue_depth", "Requests waiting for the model.", registry=registry)
        self.running = Gauge("decodekit_requests_running", "Requests being generated (0 or 1).", registry=registry)
        self.latency = Histogram("decodekit_request_latency_seconds", "From arrival to the last byte.",
                                 buckets=LATENCY_BUCKETS, registry=registry)
        self.first_token = Histogram("decodekit_time_to_first_token_seconds", "From arrival to the first text.",
                                     buckets=LATENCY_BUCKETS, registry=registry)
        self.queue_wait = Histogram("decodekit_queue_wait_seconds", "From arrival to the start of generation.",
                                    buckets=LATENCY_BUCKETS, registry=registry)

    def record_generation(self, stats: RequestStats) -> None:
        self.prompt_tokens.inc(stats.prompt_tokens)
        self.generated_tokens.inc(stats.completion_tokens)
        self.drafted_tokens.inc(stats.drafted)
        self.accepted_tokens.inc(stats.accepted)
        self.steps.inc(stats.steps)
        if stats.steps:
            self.tau.observe(stats.tau)
        if stats.drafted:
            self.acceptance.observe(stats.accepted / stats.drafted)
        self.queue_wait.observe(stats.queued_s)
        if stats.first_token_s is not None:
            self.first_token.observe(stats.first_token_s)

    def text(self) -> bytes:
        return generate_latest(self.registry)
