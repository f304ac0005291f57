"""The gateway's Prometheus metrics, on one registry of its own (not the library's global one).

``/metrics`` serves ``REGISTRY``. Queue depth is read from the store at scrape time; the rest is counted
where it happens.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400)

QUEUE_DEPTH = Gauge(
    "permit_gateway_messages",
    "Messages in the store by direction, partner and lifecycle state",
    ["direction", "partner", "state"],
    registry=REGISTRY,
)
SEND_ATTEMPTS = Counter(
    "permit_gateway_send_attempts",
    "POSTs of user messages to partners, by outcome: receipt, retry (will be resent) or failed (final)",
    ["partner", "outcome"],
    registry=REGISTRY,
)
SEND_LATENCY = Histogram(
    "permit_gateway_send_latency_seconds",
    "From submission to verified receipt, per acknowledged message (retries included)",
    ["partner"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
DELIVERY_LATENCY = Histogram(
    "permit_gateway_delivery_latency_seconds",
    "From reception to delivery to the national system, per received message",
    ["partner"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
DELIVERY_ATTEMPTS = Counter(
    "permit_gateway_delivery_attempts",
    "Deliveries of received permits to the national system (folder, webhook, SOAP), by outcome: delivered, or "
    "failed (retried after the lease; the reason in the message's timeline)",
    ["partner", "method", "outcome"],
    registry=REGISTRY,
)
STORE_UP = Gauge(
    "permit_gateway_store_up",
    "1 if the message store answered the last /metrics scrape, 0 if it was out of reach (the queue depth "
    "served then is the last one read)",
    registry=REGISTRY,
)
STORE_UNAVAILABLE = Counter(
    "permit_gateway_store_unavailable",
    "Requests answered 503 because the message store could not be reached, by endpoint: as4 or api",
    ["endpoint"],
    registry=REGISTRY,
)
FAILURES = Counter(
    "permit_gateway_messages_failed",
    "Messages that ended FAILED (direction out) or REJECTED (direction in)",
    ["direction", "partner"],
    registry=REGISTRY,
)
DUPLICATES = Counter(
    "permit_gateway_duplicates",
    "Incoming messages seen before: answered with the original receipt, refused (same id, other content), or receipted but not delivered again (document_resent: a permit seen before under another MessageId)",
    ["partner", "outcome"],
    registry=REGISTRY,
)
EBMS_ERRORS_SENT = Counter(
    "permit_gateway_ebms_errors_sent",
    "ebMS error signals sent in answer to incoming messages, by error code",
    ["code"],
    registry=REGISTRY,
)
RETENTION_PURGED = Counter(
    "permit_gateway_retention_purged_messages",
    "Messages deleted by the retention purge (with their events and evidence), by the final state they were in",
    ["state"],
    registry=REGISTRY,
)
RETENTION_PURGED_FILES = Counter(
    "permit_gateway_retention_purged_payload_files",
    "Payload files deleted by the retention purge because no stored message names them any more",
    registry=REGISTRY,
)
PULLS_SERVED = Counter(
    "permit_gateway_pulls_served",
    "PullRequests partners sent us, by outcome: message (one handed out), empty (EBMS:0006) or refused",
    ["partner", "outcome"],
    registry=REGISTRY,
)
PULLS_SENT = Counter(
    "permit_gateway_pulls_sent",
    "PullRequests we sent to partners (receive_by_pulling), by outcome: message, empty, or failed (with the "
    "reason in the log)",
    ["partner", "outcome"],
    registry=REGISTRY,
)
PARTNER_HELD = Gauge(
    "permit_gateway_partner_held",
    "1 while messages to the partner are held unsent (suspended, a certificate or revocation list not valid "
    "now, or no profile for it on this node: the reason is in the log, in each held message's timeline and "
    "`permit-gateway profiles check`), 0 otherwise; set at each send sweep",
    ["partner"],
    registry=REGISTRY,
)
SEND_WINDOW = Gauge(
    "permit_gateway_send_window",
    "How many of the partner's messages this node may have in flight now: 2 at first, one more per receipt up "
    "to [outbound].max_in_flight_per_partner, 1 after a POST that got no answer (the partner or the route to it "
    "is down or black-holed) until a receipt comes",
    ["partner"],
    registry=REGISTRY,
)
OUTBOUND_WAITING = Gauge(
    "permit_gateway_outbound_waiting_seconds",
    "How long the outbound message to the partner that has been due longest has waited, due, to be sent or "
    "pulled (0: none is due); grows while the partner is held or, with transport pull, does not pull; set at "
    "each send sweep",
    ["partner"],
    registry=REGISTRY,
)

DISK_FULL = Counter(
    "permit_gateway_disk_full",
    "Requests answered 503 because a disk was full (a payload, spool or SQLite file could not be written), by "
    "endpoint: as4 or api",
    ["endpoint"],
    registry=REGISTRY,
)
DATA_FREE_BYTES = Gauge(
    "permit_gateway_data_free_bytes",
    "Bytes free to the gateway on the file system of its data folder (payloads, spooled messages, the SQLite "
    "database by default), read at each scrape (no sample until the folder could be read)",
    ["folder"],
    registry=REGISTRY,
)
CLOCK_OFFSET = Gauge(
    "permit_gateway_clock_offset_seconds",
    "How far this node's clock runs ahead of the database server's (negative: behind), measured at start and at "
    "each lease-recovery sweep on PostgreSQL (0 on SQLite, whose only clock is the host's); nodes whose clocks "
    "differ by more than a lease take over each other's sends while they run",
    registry=REGISTRY,
)


def count_from_zero(partners: Iterable[tuple[str, str]]) -> None:
    """Create the series the alert rules watch with ``increase()`` at 0, for each (partner id, delivery method),
    before their first event: a series first seen at 1 shows no increase, and its first failure never alerts. The
    per-partner gauges start at 0 too, so every partner is in the held and waiting rules from the start."""
    for endpoint in ("as4", "api"):
        STORE_UNAVAILABLE.labels(endpoint=endpoint)
        DISK_FULL.labels(endpoint=endpoint)
    for partner, delivery_method in partners:
        for direction in ("out", "in"):
            FAILURES.labels(direction=direction, partner=partner)
        for outcome in ("receipt_resent", "refused", "document_resent"):
            DUPLICATES.labels(partner=partner, outcome=outcome)
        count_sends_from_zero(partner)
        for outcome in ("delivered", "failed"):
            DELIVERY_ATTEMPTS.labels(partner=partner, method=delivery_method, outcome=outcome)
        PARTNER_HELD.labels(partner=partner)  # a series that exists is kept as it is: a reload does not clear it
        OUTBOUND_WAITING.labels(partner=partner)


def count_sends_from_zero(partner: str) -> None:
    """The outbound failure and send-attempt series of ``partner`` at 0, for a partner with messages in the store
    that no loaded profile names (retired, renamed, not yet deployed here): after a restart only the dispatcher
    sees it, and its messages still fail at their time to live."""
    FAILURES.labels(direction="out", partner=partner)
    for outcome in ("receipt", "retry", "failed"):
        SEND_ATTEMPTS.labels(partner=partner, outcome=outcome)
