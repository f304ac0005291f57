"""One-Way/Pull, sans-IO: route a signal arriving as a request, authorize a PullRequest by its signer, answer
an empty MPC (EBMS:0006), and read the answer to a PullRequest we sent.

Only signed PullRequests are served: the signer decides which partner's messages a pull gets, so partners
sharing one MPC never see each other's messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from lxml import etree

from gateway.as4 import _ns as ns
from gateway.as4 import mime, wss
from gateway.as4._ns import SoapVersion, q
from gateway.as4.algorithms import Suite
from gateway.as4.envelope import new_draft, parse_envelope, read_envelope
from gateway.as4.errors import EbmsCode, EbmsError
from gateway.as4.events import ErrorReceived, PullRequestReceived, ReceiptReceived
from gateway.as4.header import add_message_info, parse_message_info, parse_pull_request, signal_kind
from gateway.as4.model import check_message_id
from gateway.as4.msh import _open_pull
from gateway.as4.policy import KeyPair, SecurityPolicy
from gateway.as4.signals import Outgoing, _sign_signal, error_element, parse_response

MAX_SIGNAL_BYTES = mime.MAX_ROOT_PART_BYTES + 64 * 1024
"""A signal is one envelope (no attachments): a bigger body is a user message and is not peeked at."""

SIGNALS = ("PullRequest", "Receipt", "Error")


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalPeek:
    """What a signal arriving as a request claims to be, before anything is verified: for routing only."""

    kind: str
    message_id: str
    ref_to_message_id: str | None


def peek_signal(content_type: str, body: bytes) -> SignalPeek | None:
    """The signal a request carries (unverified), or None for a user message or an unreadable body.

    None leaves the request to ``parse_incoming``, which refuses what is not a good user message with the
    right code. A SignalMessage that is broken raises ``EbmsError``.
    """
    if len(body) > MAX_SIGNAL_BYTES or b"SignalMessage" not in body:
        return None  # the element name is literal in a UTF-8 envelope: user messages skip the parse
    try:
        package = mime.parse(content_type, body)
        if package.attachments:
            return None
        root, _ = read_envelope(package.envelope)
    except EbmsError:
        return None
    if root.find(f"*/{q(ns.EB, 'Messaging')}/{q(ns.EB, 'SignalMessage')}") is None:
        return None
    incoming = parse_envelope(package.envelope)
    if incoming.kind != "SignalMessage":
        return None
    kind = signal_kind(incoming.unit)
    message_id, _, ref_to = parse_message_info(incoming.unit)
    if kind not in SIGNALS:
        raise EbmsError(
            EbmsCode.INVALID_HEADER,
            "the SignalMessage holds no Receipt, Error or PullRequest",
            ref_to_message_id=message_id,
        )
    return SignalPeek(kind=kind, message_id=message_id, ref_to_message_id=ref_to)


def parse_pull(
    content_type: str, body: bytes, *, candidates: Mapping[str, SecurityPolicy], now: datetime
) -> tuple[str, PullRequestReceived]:
    """A signed PullRequest and the one candidate (partner id -> its policy) whose profile trusts the signer.

    Unsigned: EBMS:0103. Signed by a certificate no candidate trusts: EBMS:0101. Trusted by two candidates:
    EBMS:0010 (a pull must name one partner). Whether the signer may pull the requested MPC is the caller's
    check, with the partner's profile.
    """
    package = mime.parse(content_type, body)
    incoming = parse_envelope(package.envelope)
    if incoming.kind != "SignalMessage" or signal_kind(incoming.unit) != "PullRequest":
        raise EbmsError(EbmsCode.VALUE_INCONSISTENT, "the request is not an eb:PullRequest signal")
    pull = parse_pull_request(incoming.unit)
    try:
        if not candidates:
            raise EbmsError(
                EbmsCode.PROCESSING_MODE_MISMATCH,
                f"PullRequest for MPC {pull.mpc!r}: this endpoint serves no pull P-Mode (no partner profile has "
                "transport: pull)",
            )
        partner = _signer(incoming.root, incoming.header, incoming.soap_version, candidates, now)
        return partner, _open_pull(incoming, package, pull, candidates[partner], now)
    except EbmsError as exc:
        raise exc.with_ref(pull.message_id) from None


def _signer(
    root: etree._Element,
    header: etree._Element,
    soap_version: SoapVersion,
    candidates: Mapping[str, SecurityPolicy],
    now: datetime,
) -> str:
    security = wss.find_security(header, soap_version)
    if security is None or security.find(q(ns.DS, "Signature")) is None:
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE,
            "the PullRequest is not signed; this gateway serves signed PullRequests only (the signer decides "
            "which partner's messages a pull gets)",
        )
    signature, _ = wss.the_signature(security)
    known = list(dict.fromkeys(c for policy in candidates.values() for c in policy.key_reference_candidates))
    among = "the certificates of the pulling partners' profiles (pinned, or their encryption_certificate)"
    found = wss.resolve_certificates(signature.find(q(ns.DS, "KeyInfo")), wss.index_ids(root), known, among)
    trusted: list[str] = []
    certificate = found[0]
    for partner, policy in candidates.items():
        signer = next((cert for cert in found if _trusts(policy, cert, now)), None)
        if signer is not None:
            trusted.append(partner)
            certificate = signer
    subject = certificate.subject.rfc4514_string()
    if not trusted:
        raise EbmsError(
            EbmsCode.FAILED_AUTHENTICATION,
            f"the PullRequest is signed by {subject!r}, which no profile of a pulling partner (transport: pull) "
            "trusts",
        )
    if len(trusted) > 1:
        raise EbmsError(
            EbmsCode.PROCESSING_MODE_MISMATCH,
            f"the PullRequest's signer {subject!r} is trusted by the profiles of {' and '.join(sorted(trusted))}; "
            "a pull must identify exactly one partner",
        )
    return trusted[0]


def _trusts(policy: SecurityPolicy, certificate: x509.Certificate, now: datetime) -> bool:
    try:
        wss.trust_certificate(certificate, policy, now)
    except EbmsError:
        return False
    return True


def build_empty_mpc(
    pull: PullRequestReceived,
    *,
    key: KeyPair,
    message_id: str,
    now: datetime,
    suite: Suite = Suite.EDELIVERY_1_15,
) -> Outgoing:
    """The signed EBMS:0006 EmptyMessagePartitionChannel warning: nothing waits on ``pull.mpc`` for the puller.

    A warning, not a fault: HTTP 200 and no SOAP Fault, as AS4 answers a PullRequest on an empty MPC.
    """
    check_message_id(message_id)
    draft = new_draft(pull.soap_version)
    signal = etree.SubElement(draft.messaging, q(ns.EB, "SignalMessage"))
    add_message_info(signal, message_id=message_id, timestamp=now, ref_to=pull.message_id)
    error = EbmsError(
        EbmsCode.EMPTY_MPC, f"no message waits for you on MPC {pull.mpc!r}", ref_to_message_id=pull.message_id
    )
    signal.append(error_element(error))
    _sign_signal(draft.header, draft.messaging, draft.body, key, pull.soap_version, suite)
    content_type, body = mime.build(draft.serialize(), [], envelope_content_type=pull.soap_version.content_type)
    return Outgoing(message_id=message_id, content_type=content_type, body=body)


def parse_pull_answer(
    content_type: str, body: bytes, *, sent: Outgoing, policy: SecurityPolicy, now: datetime
) -> ErrorReceived | None:
    """The answer to the PullRequest ``sent``: None when it carries a user message (give the bytes to
    ``parse_incoming`` as if pushed), else the partner's error signal (``is_empty_mpc`` says "nothing waits").

    A receipt or a PullRequest in answer, or an error signal about another message, is EBMS:0003.
    """
    peeked = peek_signal(content_type, body)
    if peeked is None:
        return None if b"UserMessage" in body else _fault_answer(content_type, body, sent, policy, now)
    if peeked.kind != "Error":
        raise EbmsError(
            EbmsCode.VALUE_INCONSISTENT,
            f"the answer to PullRequest {sent.message_id!r} is a {peeked.kind}; expected a UserMessage or an "
            "Error signal",
        )
    answer = _not_a_receipt(parse_response(content_type, body, sent=sent, policy=policy, now=now), sent)
    if answer.ref_to_message_id not in (None, sent.message_id):
        raise EbmsError(
            EbmsCode.VALUE_INCONSISTENT,
            f"the error signal answering PullRequest {sent.message_id!r} refers to {answer.ref_to_message_id!r}",
        )
    return answer


def _fault_answer(
    content_type: str, body: bytes, sent: Outgoing, policy: SecurityPolicy, now: datetime
) -> ErrorReceived:
    """Neither a user message nor a signal: a SOAP Fault carrying an eb:Error, or nothing we can use."""
    try:
        answer = parse_response(content_type, body, sent=sent, policy=policy, now=now)
    except EbmsError as exc:
        raise EbmsError(
            EbmsCode.VALUE_INCONSISTENT,
            f"the answer to PullRequest {sent.message_id!r} holds neither a UserMessage nor an ebMS signal: "
            f"{exc.detail}",
        ) from None
    return _not_a_receipt(answer, sent)


def _not_a_receipt(answer: ReceiptReceived | ErrorReceived, sent: Outgoing) -> ErrorReceived:
    """A receipt is no answer to a PullRequest. The peek sends receipts elsewhere, but not one it does not
    look into (with an attachment, or over the signal size): the partner's signature cannot make it fit."""
    if isinstance(answer, ReceiptReceived):
        raise EbmsError(
            EbmsCode.VALUE_INCONSISTENT,
            f"the answer to PullRequest {sent.message_id!r} is a Receipt; expected a UserMessage or an Error signal",
        )
    return answer


def is_empty_mpc(answer: ErrorReceived) -> bool:
    """The partner has nothing for us: its only error is the EBMS:0006 warning."""
    return bool(answer.errors) and all(e.code == EbmsCode.EMPTY_MPC.code for e in answer.errors)
