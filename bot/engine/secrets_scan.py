r"""The `secrets/*` rules: find secrets of documented formats in a file's bytes, streamed.

Speed. Every shipped byte passes through here, so the search is two-staged: a multi-literal
prefilter finds the distinctive prefixes and markers of every format in one pass
(`ahocorasick_rs`, a Rust Aho-Corasick automaton, about ten times faster here than one
compiled regex alternation; `bytes.find` per literal when that wheel is missing), and only
around a hit does the format's regex, and then its checksum, run. Text without a single
hit costs one automaton pass and one newline count.

Streaming. Bytes arrive in chunks; a secret may straddle two. Each round scans `hold + chunk`
and reports only matches that *start* before the last `TAIL` bytes, which are held back and
scanned again with the next chunk; `CONTEXT` bytes before them are kept too, so a look-behind
boundary and an AWS key pair can see across the cut. Since no match is longer than
`MAX_SECRET` < `TAIL`, nothing is cut and nothing is reported twice.

Masking. A finding shows the issuer's fixed prefix, the length and a fingerprint (the first 16
hex digits of the SHA-256 of the secret), never the random part. The fingerprint is what a
repository lists under `secrets.allow` to accept a test fixture. `redact` is a last guard that
masks any secret that reaches a finding's text by another route (a URL in a message).
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from bot.engine.model import Observation, Rule, Severity
from bot.engine.secrets_formats import (
    AWS_PAIR_WINDOW,
    AWS_SECRET,
    FORMATS,
    MAX_SECRET,
    PEM_HEADER,
    SecretFormat,
)

try:  # the fast prefilter; `bytes.find` does the same work, slower, without the wheel
    import ahocorasick_rs
except ImportError:  # pragma: no cover - exercised by forcing the fallback in tests
    ahocorasick_rs = None  # type: ignore[assignment]

TAIL: Final = 1024
"""Bytes at the end of a round whose matches wait for the next chunk (> MAX_SECRET)."""

CONTEXT: Final = 1024
"""Bytes kept before the held tail, for look-behind boundaries and AWS key pairs."""

DEFER_LINES: Final = 8 << 20
"""Bytes of a file whose newlines may wait to be counted until a finding needs its line."""

_DIRECT: Final = 2 * (CONTEXT + TAIL)
"""Chunks at least this long are searched in place (see `SecretScanner._feed_direct`)."""

MAX_CANDIDATES_PER_FILE: Final = 100_000
"""Prefilter hits examined per file. A real file has a handful; a hostile one made of
`AKIAAKIA…` would make each byte cost a regex and a pair search. Past this the file is an
`archive/limit` finding (fail closed), the way the walker treats other work bounds."""

MAX_FINDINGS_PER_FILE: Final = 50
"""Secrets listed per file; beyond that one observation per rule counts the rest."""

FINGERPRINT_HEX: Final = 16
"""Hex digits of SHA-256 a fingerprint keeps (64 bits: unique among fixtures, and far too
few to confirm a guess of a 178-bit token by brute force)."""

_ANCHOR_TRIES: Final = 4  # `sk-` may recur inside a key's random part: look a little further
_PEM_BODY_MIN: Final = 64  # base64 characters after the header: a key, not a parser's constant
_PEM_SAMPLE: Final = 512  # bytes after the header that are looked at
_PEM_FINGERPRINT_CHARS: Final = 256
_BASE64_LINE = re.compile(rb"[A-Za-z0-9+/=]+")
_PEM_STRIP = b" \t\r\"'+,;`"

AWS_DOCUMENTED_EXAMPLES: Final = frozenset(
    {
        b"AKIAIOSFODNN7EXAMPLE",
        b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        b"AKIAI44QH8DHBEXAMPLE",
        b"je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
    }
)
"""The example key pairs AWS's documentation uses (IAM user guide, "Managing access keys")."""

_PLACEHOLDER_WORDS: Final = (
    b"example",
    b"xxxx",
    b"your",
    b"placeholder",
    b"redacted",
    b"dummy",
    b"fake",
    b"sample",
    b"changeme",
    b"0000",
    b"1234",
)


def fingerprint(secret: bytes) -> str:
    """The fingerprint a finding shows and `secrets.allow` lists: `sha256:` + 16 hex digits."""
    return "sha256:" + hashlib.sha256(secret).hexdigest()[:FINGERPRINT_HEX]


def mask(value: bytes, shown: int) -> str:
    """The issuer's fixed prefix, an ellipsis and the length: `ghp_… (40 characters)`."""
    prefix = value[:shown].decode("ascii", "replace")
    return f"`{prefix}…` ({len(value)} characters)"


def classify(random_part: bytes) -> str | None:
    """Why a value is not a live secret (`documented example`, `placeholder`), or None.

    A real token's random part is drawn uniformly from 62 or 64 characters: it has many
    distinct characters, no dictionary words of four letters and no long runs.
    """
    if b"EXAMPLE" in random_part:
        return "a documented example value"
    lowered = random_part.lower()
    if any(word in lowered for word in _PLACEHOLDER_WORDS):
        return "a placeholder"
    if len(random_part) >= 12 and len(set(random_part)) <= max(4, len(random_part) // 8):
        return "a placeholder"
    steps = sum(1 for a, b in itertools.pairwise(random_part) if b - a == 1)
    if len(random_part) >= 12 and steps * 2 >= len(random_part):
        return "a placeholder"  # `abcdefgh…`, `0123456789…`
    return None


# --------------------------------------------------------------------------- prefilter


class Prefilter:
    """Where any format's literal occurs in a buffer: `(format index, offset)` pairs."""

    def __init__(self, formats: tuple[SecretFormat, ...], *, fast: bool = True) -> None:
        self._literals: list[bytes] = []
        self._owner: list[int] = []
        for index, secret_format in enumerate(formats):
            for literal in secret_format.literals:
                self._literals.append(literal)
                self._owner.append(index)
        # Leftmost-first, non-overlapping: eight times faster here than the standard
        # overlapping search (it can use the crate's SIMD prefilter), and no two literals
        # overlap, so no hit hides another.
        self._automaton = (
            ahocorasick_rs.BytesAhoCorasick(
                self._literals, matchkind=ahocorasick_rs.MatchKind.LeftmostFirst
            )
            if fast and ahocorasick_rs is not None
            else None
        )

    @property
    def fast(self) -> bool:
        return self._automaton is not None

    def hits(self, buf: bytes) -> list[tuple[int, int]]:
        if self._automaton is not None:
            found = self._automaton.find_matches_as_indexes(buf)
            return [(self._owner[literal], start) for literal, start, _ in found]
        hits: list[tuple[int, int]] = []
        for literal, owner in zip(self._literals, self._owner, strict=True):
            at = buf.find(literal)
            while at >= 0:
                hits.append((owner, at))
                at = buf.find(literal, at + 1)
        hits.sort(key=lambda hit: hit[1])
        return hits


_PREFILTER = Prefilter(FORMATS)


# --------------------------------------------------------------------------- matches


@dataclass(frozen=True, slots=True)
class SecretMatch:
    """One secret found in a buffer (never rendered as is: see `describe`)."""

    secret_format: SecretFormat
    start: int
    value: bytes
    """What the finding masks (the token, the access key id, the PEM header)."""
    identity: bytes
    """What the fingerprint hashes (the token; id and secret key; the PEM body's start)."""
    random_part: bytes
    """What `classify` judges."""
    detail: str = ""


def _value(found: re.Match[bytes]) -> tuple[int, bytes]:
    """A match's value: its `value` group, or the whole match (the PEM header)."""
    if "value" in found.re.groupindex:
        return found.start("value"), found.group("value")
    return found.start(), found.group(0)


def _match_format(secret_format: SecretFormat, buf: bytes, hit: int) -> Iterable[tuple[int, bytes]]:
    """`(start, value)` of the format's matches that cover the literal at `hit`."""
    end = min(len(buf), hit + MAX_SECRET)
    if secret_format.before == 0:
        found = secret_format.pattern.match(buf, hit, end)
        if found is not None:
            yield _value(found)
        return
    floor = max(0, hit - secret_format.before)
    at = hit
    for _ in range(_ANCHOR_TRIES):
        at = buf.rfind(secret_format.anchor, floor, at)
        if at < 0:
            return
        found = secret_format.pattern.match(buf, at, end)
        if found is not None and found.end() > hit:
            yield _value(found)
            return


def _aws_secret_near(buf: bytes, start: int, end: int) -> bytes | None:
    """The secret access key that goes with the key id at `buf[start:end]`, or None.

    The closest live one (not a documented example or placeholder) is preferred, so a real
    key written next to AWS's example pair is never paired with the example and let off.
    """
    lo, hi = max(0, start - AWS_PAIR_WINDOW), min(len(buf), end + AWS_PAIR_WINDOW)
    best: tuple[bool, int, bytes] | None = None
    for found in AWS_SECRET.finditer(buf, lo, hi):
        value = found.group("value").replace(b"\\/", b"/")
        # Real keys are random base64: both cases occur; a 40-digit hex SHA-1 has one case.
        if not (any(97 <= c <= 122 for c in value) and any(65 <= c <= 90 for c in value)):
            continue
        distance = min(abs(found.start() - end), abs(start - found.end()))
        candidate = (classify(value) is not None, distance, value)
        if best is None or candidate[:2] < best[:2]:
            best = candidate
    return None if best is None else best[2]


def _pem_body(buf: bytes, end: int) -> tuple[bytes, bool]:
    """The base64 body after a PEM header ending at `end`, and whether it has `Proc-Type`."""
    sample = buf[end : end + _PEM_SAMPLE].replace(b"\\r", b"").replace(b"\\n", b"\n")
    body = bytearray()
    encrypted = False
    started = False
    for raw in sample.split(b"\n"):
        line = raw.strip(_PEM_STRIP)
        if not line:
            continue
        if b":" in line and not started:  # RFC 1421 headers (Proc-Type, DEK-Info)
            encrypted = encrypted or line.startswith(b"Proc-Type")
            continue
        if _BASE64_LINE.fullmatch(line) is None:
            break
        started = True
        body += line
    return bytes(body), encrypted


@dataclass(slots=True)
class Found:
    """What `find_secrets` found, and where it stopped when its budget ran out."""

    matches: list[SecretMatch] = field(default_factory=list)
    candidates: int = 0
    """Literal hits it looked at (each costs a regex match, some a checksum or a pair search)."""
    stopped_at: int | None = None
    """The buffer position of the first hit left unexamined, or None when it finished."""


def find_secrets(buf: bytes, lo: int, hi: int, budget: int | None = None) -> Found:
    """Every secret in `buf` that starts in `[lo, hi)`; `buf` around it gives the context.

    At most `budget` literal hits are examined (None: all); a hit before `lo` cannot begin a
    match that starts in range and costs nothing.
    """
    found = Found()
    seen: set[tuple[Rule, int]] = set()
    for index, hit in _PREFILTER.hits(buf):
        secret_format = FORMATS[index]
        if hit < lo or (hit >= hi and secret_format.before == 0):
            continue
        if budget is not None and found.candidates >= budget:
            found.stopped_at = hit
            break
        found.candidates += 1
        for start, value in _match_format(secret_format, buf, hit):
            if not lo <= start < hi or (secret_format.rule, start) in seen:
                continue
            match = _verify(secret_format, buf, start, value)
            if match is not None:
                seen.add((secret_format.rule, start))
                found.matches.append(match)
    found.matches.sort(key=lambda match: match.start)
    return found


def _verify(
    secret_format: SecretFormat, buf: bytes, start: int, value: bytes
) -> SecretMatch | None:
    random_part = value[secret_format.shown :]
    if secret_format.random_after:
        random_part = random_part.rsplit(secret_format.random_after, 1)[-1]
    if secret_format.rule is Rule.SECRET_PRIVATE_KEY:
        body, encrypted = _pem_body(buf, start + len(value))
        if len(body) < _PEM_BODY_MIN:
            return None  # a header without a key: a parser's constant or a template
        label = PEM_HEADER.match(value)
        detail = " (encrypted with a passphrase)" if encrypted or b"ENCRYPTED" in value else ""
        return SecretMatch(
            secret_format,
            start,
            value=value,
            identity=(label.group("label") if label else b"") + body[:_PEM_FINGERPRINT_CHARS],
            random_part=body,
            detail=detail,
        )
    if secret_format.rule is Rule.SECRET_AWS:
        secret = _aws_secret_near(buf, start, start + len(value))
        if secret is None:
            return None  # an access key id alone is not a credential
        return SecretMatch(
            secret_format,
            start,
            value=value,
            identity=value + b":" + secret,
            random_part=secret,  # the id is not a secret: the key decides
            detail=" with a secret access key next to it",
        )
    checksum = secret_format.valid
    if checksum is not None and classify(random_part) is None and not checksum(value):
        return None  # right shape, wrong checksum: not a token
    return SecretMatch(secret_format, start, value=value, identity=value, random_part=random_part)


def describe(match: SecretMatch) -> tuple[str, Severity | None]:
    """The finding's message (masked) and its severity ceiling (NOTICE for a non-secret)."""
    secret_format = match.secret_format
    value = match.value
    if secret_format.rule is Rule.SECRET_PRIVATE_KEY:
        header = value.decode("ascii", "replace")
        shown = f"`{header}` ({len(match.random_part)}+ base64 characters follow)"
    else:
        shown = mask(value, secret_format.shown)
    why = classify(match.random_part)
    if match.random_part in AWS_DOCUMENTED_EXAMPLES:
        why = "a documented example value"
    head = f"{secret_format.title} {shown}{match.detail}, fingerprint {fingerprint(match.identity)}"
    if why is not None:
        return f"{head}: {why}, not a live secret.", Severity.NOTICE
    return (
        f"{head}: {secret_format.advice}. A test fixture that must ship can be accepted by "
        "listing its fingerprint under `secrets.allow`.",
        None,
    )


# --------------------------------------------------------------------------- streaming

_SPARSE_NEWLINES: Final = 64


def count_newlines(buf: bytes, lo: int, hi: int) -> int:
    """`buf.count(b"\n", lo, hi)`, faster where newlines are rare.

    `bytes.count` looks at every byte; `bytes.find` of one byte is `memchr`, many times
    faster, and most of a release's bytes are minified bundles and source maps with few
    line breaks. Past a few dozen newlines the text is line-oriented and `count` is cheaper.
    """
    found = 0
    at = buf.find(b"\n", lo, hi)
    while at >= 0:
        found += 1
        if found >= _SPARSE_NEWLINES:
            return found + buf.count(b"\n", at + 1, hi)
        at = buf.find(b"\n", at + 1, hi)
    return found


@dataclass(slots=True)
class SecretScanner:
    """Scan one file's bytes, fed in chunks; `close` returns the observations.

    `path` is the display path of the findings; `line`, when given, is the line every
    finding is put on (a decoded inline map's pragma), else the line of the match is counted.
    `where` is appended to each message (` in the inline source map`).
    """

    path: str
    allow: frozenset[str] = frozenset()
    line: int | None = None
    where: str = ""
    observations: list[Observation] = field(default_factory=list)
    _hold: bytes = b""
    _fresh: int = 0
    _line_base: int = 1
    _uncounted: deque[tuple[bytes, int]] = field(default_factory=deque)
    _uncounted_bytes: int = 0
    _overflow: dict[Rule, int] = field(default_factory=dict)
    _overflow_live: set[Rule] = field(default_factory=set)
    _listed: int = 0
    _candidates: int = 0
    _stopped_line: int | None = None

    def feed(self, chunk: bytes) -> None:
        if not chunk or self._stopped_line is not None:
            return
        if len(chunk) < _DIRECT:
            self._feed_joined(chunk)
        else:
            self._feed_direct(chunk)

    def _feed_joined(self, chunk: bytes) -> None:
        """A small chunk: scan it joined to what is held (copying a few KiB is cheap)."""
        buf = self._hold + chunk if self._hold else chunk
        limit = len(buf) - TAIL
        if limit <= self._fresh:
            self._hold = buf
            return
        self._scan(buf, self._fresh, limit)
        keep = max(0, limit - CONTEXT)
        self._advance(buf, keep)
        self._hold = buf[keep:]
        self._fresh = limit - keep

    def _feed_direct(self, chunk: bytes) -> None:
        """A large chunk, searched in place: joining it to the held bytes would copy it.

        The junction (held bytes and the chunk's first `CONTEXT + TAIL` bytes) takes the
        matches that start in the held bytes or in the chunk's first `CONTEXT` bytes; the
        chunk itself takes the rest, each match with `CONTEXT` bytes before it and `TAIL`
        after it in the same buffer.
        """
        hold = self._hold
        junction = hold + chunk[: CONTEXT + TAIL]
        self._scan(junction, self._fresh, len(hold) + CONTEXT)
        self._advance(hold, len(hold))
        self._scan(chunk, CONTEXT, len(chunk) - TAIL)
        keep = len(chunk) - TAIL - CONTEXT
        self._advance(chunk, keep)
        self._hold = chunk[keep:]
        self._fresh = CONTEXT

    def _advance(self, buf: bytes, end: int) -> None:
        """`buf[:end]` is done with: its lines are counted, later if it can wait.

        Lines matter only for a finding, and most files have none: up to `DEFER_LINES`
        bytes are kept uncounted (references to chunks already in memory) and counted only
        when a finding needs its line or when they would exceed that bound.
        """
        if self.line is None and end > 0:
            self._uncounted.append((buf, end))
            self._uncounted_bytes += end
            while self._uncounted_bytes > DEFER_LINES:
                old, old_end = self._uncounted.popleft()
                self._uncounted_bytes -= old_end
                self._line_base += count_newlines(old, 0, old_end)

    def _line_at_start(self) -> int:
        """The line of the first byte not yet advanced past (counting what was deferred)."""
        while self._uncounted:
            old, old_end = self._uncounted.popleft()
            self._line_base += count_newlines(old, 0, old_end)
        self._uncounted_bytes = 0
        return self._line_base

    def close(self) -> list[Observation]:
        buf, self._hold = self._hold, b""
        if len(buf) > self._fresh:
            self._scan(buf, self._fresh, len(buf))
        self._fresh = 0
        for rule, count in self._overflow.items():
            message = (
                f"{count} more {rule.value} finding{'s' if count != 1 else ''} in this file "
                f"are not listed (at most {MAX_FINDINGS_PER_FILE} per file){self.where}."
            )
            # Only live secrets among them make the count more than a notice.
            ceiling = None if rule in self._overflow_live else Severity.NOTICE
            self.observations.append(
                Observation(rule, self.path, message, self.line, ceiling=ceiling)
            )
        self._overflow = {}
        if self._stopped_line is not None:
            message = (
                f"more than {MAX_CANDIDATES_PER_FILE:,} places in this file look like the start "
                "of a secret: the rest of it was not searched for secrets, so the scan fails "
                f"closed{self.where}."
            )
            self.observations.append(
                Observation(Rule.ARCHIVE_LIMIT, self.path, message, self._stopped_line)
            )
        return self.observations

    def _scan(self, buf: bytes, lo: int, hi: int) -> None:
        """Report the secrets starting in `buf[lo:hi]` (`buf[0]` is the first byte not yet
        advanced past)."""
        if self._stopped_line is not None:
            return
        found = find_secrets(buf, lo, hi, MAX_CANDIDATES_PER_FILE - self._candidates)
        self._candidates += found.candidates
        for match in found.matches:
            if fingerprint(match.identity) in self.allow:
                continue
            rule = match.secret_format.rule
            message, ceiling = describe(match)
            if self._listed >= MAX_FINDINGS_PER_FILE:
                self._overflow[rule] = self._overflow.get(rule, 0) + 1
                if ceiling is None:
                    self._overflow_live.add(rule)
                continue
            self._listed += 1
            self.observations.append(
                Observation(
                    rule,
                    self.path,
                    message + self.where,
                    self._line_of(buf, match.start),
                    ceiling=ceiling,
                )
            )
        if found.stopped_at is not None:
            self._stopped_line = self._line_of(buf, found.stopped_at)

    def _line_of(self, buf: bytes, position: int) -> int | None:
        if self.line is not None:
            return self.line
        return self._line_at_start() + count_newlines(buf, 0, position)


# --------------------------------------------------------------------------- last guard


def redact(text: str) -> str:
    """`text` with every secret of a known format masked (a guard on rendered findings)."""
    data = text.encode("utf-8", "surrogatepass")
    pieces: list[bytes] = []
    at = 0
    spans: list[tuple[int, int, bytes]] = []
    for index, hit in _PREFILTER.hits(data):
        secret_format = FORMATS[index]
        for start, value in _match_format(secret_format, data, hit):
            if _verify(secret_format, data, start, value) is None:
                continue  # not a secret: a PEM header without a key, a wrong checksum
            shown = value[: secret_format.shown] if secret_format.shown else value[:11]
            spans.append((start, start + len(value), shown + "…".encode()))
    if not spans:
        return text
    for start, end, replacement in sorted(spans):
        if start < at:
            continue
        pieces.append(data[at:start])
        pieces.append(replacement)
        at = end
    pieces.append(data[at:])
    return b"".join(pieces).decode("utf-8", "surrogatepass")
