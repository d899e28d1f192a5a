"""CMS signatures (RFC 5652) and RFC 3161 time-stamp tokens, read with a small strict DER reader.

Standard library and ``cryptography`` only: this file is copied into every archive bag. It checks
what a PDF signature or a ``.tsr`` token says about some bytes:

- the structure is DER (definite, minimal lengths) and holds exactly the fields we expect;
- the signed attributes name the content type and carry the digest of the signed bytes;
- the signing certificate is the one the ESS ``signingCertificate(V2)`` attribute names;
- the signature over the signed attributes verifies with that certificate's key (RSA PKCS#1 v1.5,
  ECDSA or Ed25519);
- every certificate in the token belongs to the signer's chain, and each link verifies, up to a
  self-signed root or to one of the trust anchors given; each is valid at the reference time.

Whether the root is trusted is the caller's decision (:attr:`Signature.anchored`). ``openssl ts
-verify`` remains the reference check for tokens; this module lets the verifier work without it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

SEQUENCE, SET, INTEGER, OCTET_STRING, NULL, OID = 0x30, 0x31, 0x02, 0x04, 0x05, 0x06
BOOLEAN, UTF8_STRING, GENERALIZED_TIME, UTC_TIME = 0x01, 0x0C, 0x18, 0x17
CONTEXT_0, CONTEXT_1, CONTEXT_0_PRIMITIVE = 0xA0, 0xA1, 0x80

ID_DATA = "1.2.840.113549.1.7.1"
ID_SIGNED_DATA = "1.2.840.113549.1.7.2"
ID_TST_INFO = "1.2.840.113549.1.9.16.1.4"
ATTR_CONTENT_TYPE = "1.2.840.113549.1.9.3"
ATTR_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
ATTR_SIGNING_TIME = "1.2.840.113549.1.9.5"
ATTR_SIGNING_CERTIFICATE = "1.2.840.113549.1.9.16.2.12"
ATTR_SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"
ATTR_SIGNATURE_TIMESTAMP = "1.2.840.113549.1.9.16.2.14"
EKU_TIME_STAMPING = "1.3.6.1.5.5.7.3.8"

DIGESTS: dict[str, tuple[str, type[hashes.HashAlgorithm]]] = {
    "2.16.840.1.101.3.4.2.1": ("sha256", hashes.SHA256),
    "2.16.840.1.101.3.4.2.2": ("sha384", hashes.SHA384),
    "2.16.840.1.101.3.4.2.3": ("sha512", hashes.SHA512),
}
SHA1 = "1.3.14.3.2.26"
RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
ED25519 = "1.3.101.112"
# Signature algorithms that name their digest: it must be the SignerInfo's digest algorithm.
SIGNATURE_DIGESTS = {
    "1.2.840.113549.1.1.11": "sha256",  # sha256WithRSAEncryption
    "1.2.840.113549.1.1.12": "sha384",
    "1.2.840.113549.1.1.13": "sha512",
    "1.2.840.10045.4.3.2": "sha256",  # ecdsa-with-SHA256
    "1.2.840.10045.4.3.3": "sha384",
    "1.2.840.10045.4.3.4": "sha512",
}
MAX_CHAIN = 8
_DER = Encoding.DER


class CmsError(ValueError):
    """Bytes that are not the expected DER structure, or a signature that does not hold."""


# --- DER ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tlv:
    """One DER element: its tag octet and where its content lies in ``data``."""

    data: bytes
    tag: int
    start: int
    body: int
    end: int

    @property
    def content(self) -> bytes:
        return self.data[self.body : self.end]

    @property
    def raw(self) -> bytes:
        return self.data[self.start : self.end]

    def children(self) -> list[Tlv]:
        if not self.tag & 0x20:
            raise CmsError(f"DER element with tag 0x{self.tag:02x} is not constructed")
        return read_elements(self.data, self.body, self.end)


def read_element(data: bytes, offset: int, limit: int | None = None) -> Tlv:
    """The DER element at ``offset``; definite minimal lengths and low tag numbers only."""
    limit = len(data) if limit is None else limit
    if offset + 2 > limit:
        raise CmsError("DER element is cut short")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise CmsError("DER tag numbers above 30 are not used here")
    first = data[offset + 1]
    position = offset + 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise CmsError("indefinite length is not DER")
    else:
        count = first & 0x7F
        if count > 4 or position + count > limit:
            raise CmsError("DER length is too large or cut short")
        length = int.from_bytes(data[position : position + count], "big")
        if length < 0x80 or data[position] == 0:
            raise CmsError("DER length is not in its shortest form")
        position += count
    end = position + length
    if end > limit:
        raise CmsError("DER element runs past its container")
    return Tlv(data, tag, offset, position, end)


def read_elements(data: bytes, start: int, end: int) -> list[Tlv]:
    elements = []
    while start < end:
        element = read_element(data, start, end)
        elements.append(element)
        start = element.end
    return elements


def parse_der(data: bytes, *, zero_padding: bool = False) -> Tlv:
    """One DER element filling ``data``; with ``zero_padding`` it may be followed by zero bytes
    (the space a PDF reserves for its signature), and nothing else."""
    element = read_element(data, 0)
    rest = data[element.end :]
    if rest and not (zero_padding and not rest.strip(b"\x00")):
        raise CmsError("bytes follow the DER structure")
    return element


def expect(element: Tlv, tag: int, what: str) -> Tlv:
    if element.tag != tag:
        raise CmsError(f"{what}: expected DER tag 0x{tag:02x}, found 0x{element.tag:02x}")
    return element


def fields(element: Tlv, tag: int, what: str, count: range) -> list[Tlv]:
    children = expect(element, tag, what).children()
    if len(children) not in count:
        raise CmsError(f"{what} has {len(children)} fields")
    return children


def read_oid(element: Tlv) -> str:
    content = expect(element, OID, "object identifier").content
    if not content or content[-1] & 0x80:
        raise CmsError("malformed object identifier")
    numbers: list[int] = []
    value = 0
    for i, byte in enumerate(content):
        if value == 0 and byte == 0x80 and (i == 0 or not content[i - 1] & 0x80):
            raise CmsError("object identifier is not in its shortest form")
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            numbers.append(value)
            value = 0
    first = min(numbers[0] // 40, 2)
    return ".".join(str(n) for n in [first, numbers[0] - 40 * first, *numbers[1:]])


def read_int(element: Tlv) -> int:
    content = expect(element, INTEGER, "integer").content
    if not content or (
        len(content) > 1
        and (
            (content[0] == 0 and not content[1] & 0x80)
            or (content[0] == 0xFF and content[1] & 0x80)
        )
    ):
        raise CmsError("integer is not in its shortest form")
    return int.from_bytes(content, "big", signed=True)


def read_time(element: Tlv) -> dt.datetime:
    """GeneralizedTime (``YYYYMMDDHHMMSS[.f]Z``) or UTCTime (``YYMMDDHHMMSSZ``), in UTC."""
    text = element.content.decode("ascii", "replace")
    try:
        if element.tag == GENERALIZED_TIME:
            if not text.endswith("Z") or len(text) < 15 or text[14:15] not in ("Z", "."):
                raise ValueError
            if text[14] == "Z" and len(text) != 15:
                raise ValueError
            whole = dt.datetime.strptime(text[:14], "%Y%m%d%H%M%S")
            fraction = text[15:-1]
            if text[14] == "." and (not fraction.isdigit() or fraction.endswith("0")):
                raise ValueError
            micro = int((fraction + "000000")[:6]) if fraction else 0
            return whole.replace(microsecond=micro, tzinfo=dt.UTC)
        if element.tag == UTC_TIME and len(text) == 13 and text.endswith("Z"):
            parsed = dt.datetime.strptime(text[:12], "%y%m%d%H%M%S")
            return parsed.replace(tzinfo=dt.UTC)
    except ValueError:
        pass
    raise CmsError(f"not a DER time: {text!r}")


def read_algorithm(element: Tlv) -> str:
    """AlgorithmIdentifier with absent or NULL parameters; returns the OID."""
    parts = fields(element, SEQUENCE, "algorithm identifier", range(1, 3))
    if len(parts) == 2 and (parts[1].tag != NULL or parts[1].content):
        raise CmsError("unexpected algorithm parameters")
    return read_oid(parts[0])


def digest_name(oid: str) -> str:
    if oid not in DIGESTS:
        raise CmsError(f"digest algorithm {oid} is not accepted (SHA-256, SHA-384, SHA-512)")
    return DIGESTS[oid][0]


def digest(name: str, data: bytes) -> bytes:
    return hashlib.new(name, data).digest()


# --- certificates -------------------------------------------------------------------------------


def certificate_issuer_and_serial(cert: x509.Certificate) -> tuple[bytes, int]:
    """The issuer Name exactly as encoded in the certificate, and its serial number."""
    tbs = parse_der(cert.tbs_certificate_bytes).children()
    offset = 1 if tbs and tbs[0].tag == CONTEXT_0 else 0
    return tbs[offset + 2].raw, read_int(tbs[offset])


def subject_name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return constraints.ca


def _check_validity(cert: x509.Certificate, at: dt.datetime | None) -> None:
    if at is None:
        return
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise CmsError(
            f"certificate {subject_name(cert)} is not valid at {at:%Y-%m-%d %H:%M:%S}Z "
            f"(valid {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d})"
        )


def build_chain(
    signer: x509.Certificate,
    pool: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    at: dt.datetime | None,
) -> tuple[list[x509.Certificate], bool]:
    """The chain from ``signer`` upwards through ``pool`` and ``anchors``, each link verified and
    valid at ``at`` (when given); True when it ends at one of the anchors."""
    chain = [signer]
    anchor_bytes = {a.public_bytes(_DER) for a in anchors}
    _check_validity(signer, at)
    while len(chain) <= MAX_CHAIN:
        cert = chain[-1]
        if cert.public_bytes(_DER) in anchor_bytes:
            return chain, True
        if cert.issuer == cert.subject and _issued_by(cert, cert):
            return chain, False  # a self-signed root that is not an anchor
        issuers = [c for c in [*anchors, *pool] if c.subject == cert.issuer and _issued_by(cert, c)]
        if not issuers:
            if cert.issuer == cert.subject:
                raise CmsError(f"self-signed certificate {subject_name(cert)} does not verify")
            return chain, False
        issuer = issuers[0]
        if not _is_ca(issuer):
            raise CmsError(f"certificate {subject_name(issuer)} issues others but is not a CA")
        _check_validity(issuer, at)
        chain.append(issuer)
    raise CmsError("certificate chain is too long")


# --- SignedData ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signature:
    """A verified CMS signature: who signed, with which digest, and the chain found."""

    signer: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    anchored: bool  # the chain reaches one of the trust anchors given
    digest_algorithm: str
    content_type: str
    content: bytes | None  # the encapsulated content, when not detached
    signing_time: dt.datetime | None
    signature_timestamp: Timestamp | None = None

    @property
    def root(self) -> x509.Certificate:
        return self.chain[-1]


@dataclass(frozen=True)
class Timestamp:
    """A verified RFC 3161 token: when, over which digest, by whom."""

    gen_time: dt.datetime
    imprint_algorithm: str
    imprint: bytes
    serial: int
    policy: str
    signature: Signature


def _attributes(element: Tlv) -> dict[str, list[Tlv]]:
    """SignedAttributes/UnsignedAttributes: each type once, each with at least one value."""
    found: dict[str, list[Tlv]] = {}
    for attribute in element.children():
        kind, values = fields(attribute, SEQUENCE, "attribute", range(2, 3))
        oid = read_oid(kind)
        if oid in found:
            raise CmsError(f"attribute {oid} appears twice")
        found[oid] = expect(values, SET, "attribute values").children()
        if not found[oid]:
            raise CmsError(f"attribute {oid} has no value")
    return found


def _single(attributes: dict[str, list[Tlv]], oid: str, what: str) -> Tlv:
    values = attributes.get(oid)
    if values is None:
        raise CmsError(f"the signed attributes have no {what}")
    if len(values) != 1:
        raise CmsError(f"the {what} attribute has {len(values)} values")
    return values[0]


def _check_signing_certificate(attributes: dict[str, list[Tlv]], signer: x509.Certificate) -> None:
    """ESS signingCertificateV2 (or v1 with SHA-1): its first ESSCertID must hash the signer."""
    der = signer.public_bytes(_DER)
    if ATTR_SIGNING_CERTIFICATE_V2 in attributes:
        value = _single(attributes, ATTR_SIGNING_CERTIFICATE_V2, "signingCertificateV2")
        certs = fields(value, SEQUENCE, "SigningCertificateV2", range(1, 3))[0]
        first = expect(certs, SEQUENCE, "ESSCertIDv2 list").children()[0]
        parts = fields(first, SEQUENCE, "ESSCertIDv2", range(1, 4))
        algorithm = "sha256"
        if parts[0].tag == SEQUENCE:
            algorithm = digest_name(read_algorithm(parts[0]))
            parts = parts[1:]
        expected = expect(parts[0], OCTET_STRING, "certHash").content
        if digest(algorithm, der) != expected:
            raise CmsError("signingCertificateV2 does not name the signing certificate")
        return
    if ATTR_SIGNING_CERTIFICATE in attributes:
        value = _single(attributes, ATTR_SIGNING_CERTIFICATE, "signingCertificate")
        certs = fields(value, SEQUENCE, "SigningCertificate", range(1, 3))[0]
        first = expect(certs, SEQUENCE, "ESSCertID list").children()[0]
        parts = fields(first, SEQUENCE, "ESSCertID", range(1, 3))
        expected = expect(parts[0], OCTET_STRING, "certHash").content
        if hashlib.sha1(der).digest() != expected:  # noqa: S324 (a certificate id, as RFC 2634 says)
            raise CmsError("signingCertificate does not name the signing certificate")
        return
    raise CmsError("the signed attributes do not name the signing certificate (ESS)")


def _verify_raw_signature(
    cert: x509.Certificate, algorithm: str, digest_alg: str, signature: bytes, message: bytes
) -> None:
    named = SIGNATURE_DIGESTS.get(algorithm)
    if named is not None and named != digest_alg:
        raise CmsError(f"signature algorithm {algorithm} does not use the digest {digest_alg}")
    hash_cls = dict(DIGESTS.values())[digest_alg]
    key = cert.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey) and algorithm in (
            RSA_ENCRYPTION,
            "1.2.840.113549.1.1.11",
            "1.2.840.113549.1.1.12",
            "1.2.840.113549.1.1.13",
        ):
            key.verify(signature, message, padding.PKCS1v15(), hash_cls())
        elif isinstance(key, ec.EllipticCurvePublicKey) and algorithm.startswith(
            "1.2.840.10045.4.3."
        ):
            key.verify(signature, message, ec.ECDSA(hash_cls()))
        elif isinstance(key, ed25519.Ed25519PublicKey) and algorithm == ED25519:
            key.verify(signature, message)
        else:
            raise CmsError(f"signature algorithm {algorithm} does not fit the signer's key")
    except InvalidSignature:
        raise CmsError("the signature does not verify with the signer's certificate") from None


def verify_signed_data(
    der: bytes,
    *,
    detached: bytes | None = None,
    anchors: Sequence[x509.Certificate] = (),
    at: dt.datetime | None = None,
    zero_padding: bool = False,
    time_stamping: bool = False,
) -> Signature:
    """Verify a CMS ContentInfo holding SignedData with one signer; CmsError when anything fails.

    ``detached`` is the signed content when the SignedData does not hold it (PDF signatures).
    Certificates must be valid at ``at`` (else at the signed signing time; with neither, validity
    dates are not checked: the caller says so). ``time_stamping``
    requires the signer's critical extended key usage to be timeStamping only (RFC 3161 §2.3).
    """
    content_info = parse_der(der, zero_padding=zero_padding)
    kind, explicit = fields(content_info, SEQUENCE, "ContentInfo", range(2, 3))
    if read_oid(kind) != ID_SIGNED_DATA:
        raise CmsError("not a CMS SignedData")
    (signed_data,) = fields(explicit, CONTEXT_0, "ContentInfo content", range(1, 2))
    parts = fields(signed_data, SEQUENCE, "SignedData", range(4, 7))
    version = read_int(parts[0])
    digest_set = expect(parts[1], SET, "digestAlgorithms").children()
    econtent_parts = fields(parts[2], SEQUENCE, "EncapsulatedContentInfo", range(1, 3))
    rest = parts[3:]
    certificates: list[x509.Certificate] = []
    if rest and rest[0].tag == CONTEXT_0:
        for element in rest[0].children():
            expect(element, SEQUENCE, "certificate")
            try:
                certificates.append(load_der_certificate(element.raw))
            except ValueError as exc:
                raise CmsError(f"a certificate in the signature is damaged: {exc}") from None
        rest = rest[1:]
    if rest and rest[0].tag == CONTEXT_1:
        raise CmsError("CRLs inside the signature are not supported")
    if len(rest) != 1:
        raise CmsError("SignedData does not end with its signerInfos")
    signer_infos = expect(rest[0], SET, "signerInfos").children()
    if len(signer_infos) != 1:
        raise CmsError(f"expected one signer, found {len(signer_infos)}")

    content_type = read_oid(econtent_parts[0])
    content: bytes | None = None
    if len(econtent_parts) == 2:
        (octets,) = fields(econtent_parts[1], CONTEXT_0, "eContent", range(1, 2))
        content = expect(octets, OCTET_STRING, "eContent").content
    if (content is None) == (detached is None):
        raise CmsError("the signed content is missing" if content is None else "unexpected content")
    signed_bytes = content if content is not None else detached
    assert signed_bytes is not None

    info = fields(signer_infos[0], SEQUENCE, "SignerInfo", range(6, 8))
    info_version = read_int(info[0])
    sid = info[1]
    digest_oid = read_algorithm(info[2])
    digest_alg = digest_name(digest_oid)
    if [e.raw for e in digest_set] != [info[2].raw]:
        raise CmsError("digestAlgorithms does not list exactly the signer's digest algorithm")
    signed_attrs = expect(info[3], CONTEXT_0, "signedAttrs")
    signature_oid = read_algorithm(info[4])
    signature_value = expect(info[5], OCTET_STRING, "signature").content
    unsigned = info[6] if len(info) == 7 else None
    if unsigned is not None:
        expect(unsigned, CONTEXT_1, "unsignedAttrs")

    if sid.tag == SEQUENCE:
        expected_version = 1
        issuer, serial = fields(sid, SEQUENCE, "IssuerAndSerialNumber", range(2, 3))
        wanted = (issuer.raw, read_int(serial))
        matches = [c for c in certificates if certificate_issuer_and_serial(c) == wanted]
    elif sid.tag == CONTEXT_0_PRIMITIVE:
        expected_version = 3
        matches = [c for c in certificates if _subject_key_id(c) == sid.content]
    else:
        raise CmsError("unknown signer identifier")
    if info_version != expected_version:
        raise CmsError(f"SignerInfo version {info_version} does not fit its signer identifier")
    wanted_version = 3 if expected_version == 3 or content_type != ID_DATA else 1
    if version != wanted_version:
        raise CmsError(f"SignedData version {version} is not {wanted_version}")
    if not matches:
        raise CmsError("the signing certificate is not in the signature")
    signer = matches[0]
    if any(m.public_bytes(_DER) != signer.public_bytes(_DER) for m in matches):
        raise CmsError("two different certificates match the signer identifier")

    attributes = _attributes(signed_attrs)
    if read_oid(_single(attributes, ATTR_CONTENT_TYPE, "content type")) != content_type:
        raise CmsError("the content-type attribute does not match the content")
    message_digest = expect(
        _single(attributes, ATTR_MESSAGE_DIGEST, "message digest"), OCTET_STRING, "messageDigest"
    ).content
    if message_digest != digest(digest_alg, signed_bytes):
        raise CmsError(f"the {digest_alg} digest of the signed bytes does not match")
    signing_time = None
    if ATTR_SIGNING_TIME in attributes:
        signing_time = read_time(_single(attributes, ATTR_SIGNING_TIME, "signing time"))
    _check_signing_certificate(attributes, signer)
    # The signature covers the DER of the attributes as a SET (RFC 5652 §5.4).
    message = bytes([SET]) + signed_attrs.raw[1:]
    _verify_raw_signature(signer, signature_oid, digest_alg, signature_value, message)

    reference = at or signing_time
    if time_stamping:
        _check_time_stamping_usage(signer)
    chain, anchored = build_chain(signer, certificates, anchors, reference)
    chain_bytes = {c.public_bytes(_DER) for c in chain}
    for cert in certificates:
        if cert.public_bytes(_DER) not in chain_bytes:
            raise CmsError(f"certificate {subject_name(cert)} is not on the signer's chain")

    signature_timestamp = None
    if unsigned is not None:
        unsigned_attributes = _attributes(unsigned)
        if set(unsigned_attributes) - {ATTR_SIGNATURE_TIMESTAMP}:
            raise CmsError("unsupported unsigned attributes in the signature")
        token = _single(unsigned_attributes, ATTR_SIGNATURE_TIMESTAMP, "signature time-stamp")
        signature_timestamp = verify_timestamp_token(token.raw, signature_value, anchors=anchors)
    return Signature(
        signer=signer,
        chain=tuple(chain),
        anchored=anchored,
        digest_algorithm=digest_alg,
        content_type=content_type,
        content=content,
        signing_time=signing_time,
        signature_timestamp=signature_timestamp,
    )


def _subject_key_id(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


def _check_time_stamping_usage(cert: x509.Certificate) -> None:
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise CmsError("the TSA certificate has no extended key usage") from None
    if not usage.critical or [u.dotted_string for u in usage.value] != [EKU_TIME_STAMPING]:
        raise CmsError("the TSA certificate's extended key usage is not critical timeStamping")


# --- RFC 3161 -----------------------------------------------------------------------------------


def token_from_response(tsr: bytes) -> bytes:
    """The TimeStampToken inside a DER TimeStampResp (a ``.tsr`` file); CmsError unless granted."""
    response = parse_der(tsr)
    parts = fields(response, SEQUENCE, "TimeStampResp", range(1, 3))
    status_parts = fields(parts[0], SEQUENCE, "PKIStatusInfo", range(1, 4))
    status = read_int(status_parts[0])
    for extra in status_parts[1:]:
        if extra.tag == SEQUENCE:
            for text in extra.children():
                expect(text, UTF8_STRING, "status text").content.decode("utf-8")
        elif extra.tag != 0x03:
            raise CmsError("unexpected field in PKIStatusInfo")
    if status not in (0, 1):
        raise CmsError(f"the TSA refused the request (status {status})")
    if len(parts) != 2:
        raise CmsError("a granted response without a time-stamp token")
    return parts[1].raw


def verify_timestamp_token(
    token: bytes,
    data: bytes,
    *,
    anchors: Sequence[x509.Certificate] = (),
    zero_padding: bool = False,
) -> Timestamp:
    """Verify a TimeStampToken (CMS SignedData over a TSTInfo) whose imprint covers ``data``."""
    # The TSTInfo is signed content: read genTime first to check certificates at that moment.
    info = _tst_info(_encapsulated(token, zero_padding))
    signature = verify_signed_data(
        token, anchors=anchors, at=info[0], zero_padding=zero_padding, time_stamping=True
    )
    if signature.content_type != ID_TST_INFO or signature.content is None:
        raise CmsError("the token does not hold a TSTInfo")
    gen_time, algorithm, imprint, serial, policy = _tst_info(signature.content)
    if imprint != digest(algorithm, data):
        raise CmsError(f"the token's {algorithm} imprint does not match the data")
    return Timestamp(gen_time, algorithm, imprint, serial, policy, signature)


def _encapsulated(token: bytes, zero_padding: bool) -> bytes:
    content_info = parse_der(token, zero_padding=zero_padding)
    _, explicit = fields(content_info, SEQUENCE, "ContentInfo", range(2, 3))
    (signed_data,) = fields(explicit, CONTEXT_0, "ContentInfo content", range(1, 2))
    parts = fields(signed_data, SEQUENCE, "SignedData", range(4, 7))
    econtent = fields(parts[2], SEQUENCE, "EncapsulatedContentInfo", range(2, 3))
    (octets,) = fields(econtent[1], CONTEXT_0, "eContent", range(1, 2))
    return expect(octets, OCTET_STRING, "eContent").content


def _tst_info(der: bytes) -> tuple[dt.datetime, str, bytes, int, str]:
    parts = fields(parse_der(der), SEQUENCE, "TSTInfo", range(5, 11))
    if read_int(parts[0]) != 1:
        raise CmsError("TSTInfo version is not 1")
    policy = read_oid(parts[1])
    algorithm_id, hashed = fields(parts[2], SEQUENCE, "MessageImprint", range(2, 3))
    algorithm = digest_name(read_algorithm(algorithm_id))
    imprint = expect(hashed, OCTET_STRING, "hashedMessage").content
    serial = read_int(parts[3])
    gen_time = read_time(expect(parts[4], GENERALIZED_TIME, "genTime"))
    return gen_time, algorithm, imprint, serial, policy


def read_gen_time(tsr: bytes) -> dt.datetime:
    """genTime of a ``.tsr`` without checking anything else (for ``openssl ts -attime``)."""
    return _tst_info(_encapsulated(token_from_response(tsr), False))[0]


# --- PEM ----------------------------------------------------------------------------------------


def load_der_certificate(der: bytes) -> x509.Certificate:
    """A DER certificate; CmsError also for what ``cryptography`` only warns about today (a
    serial number that is not positive, RFC 5280 §4.1.2.2): a verifier refuses it."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return x509.load_der_x509_certificate(der)
        except (ValueError, Warning) as exc:
            raise CmsError(f"a certificate is malformed: {exc}") from None


def load_pem_certificates(text: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM file (text around the blocks is allowed, as OpenSSL allows)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return x509.load_pem_x509_certificates(text)
        except (ValueError, Warning) as exc:
            raise CmsError(f"not a PEM certificate file: {exc}") from None
