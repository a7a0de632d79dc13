r"""The secret formats the `secrets/*` rules look for: one entry per issuer's documented format.

Only formats an issuer documents and that are distinctive enough to flag without context are
here: a fixed prefix (or marker) plus a fixed alphabet and length, and a checksum where the
format has one. Generic "high-entropy string" or `password=` heuristics are deliberately
absent: a release gate must not cry wolf on every bundle.

Each format names the literal byte strings that a match must contain (the prefilter looks for
those first, see `bot.engine.secrets_scan`) and a regex for the whole secret, searched only
around a literal hit. Boundaries: a secret must not be glued to letters or digits on either
side, except that a JSON or JS escape (`\n`, `\t`, `\r`) may precede it, since minified code and
a source map's `sourcesContent` escape the newline before a line that starts with a token.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from bot.engine.model import Rule

# Not glued to a word character on the left, unless a `\n`/`\r`/`\t` escape is.
_START: Final = rb"(?:(?<![A-Za-z0-9_])|(?<=\\[nrt]))"
# Not glued to a word character on the right.
_END: Final = rb"(?![A-Za-z0-9_])"

BASE62: Final = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
"""The digit order of GitHub's and npm's checksum encoding (0-9, A-Z, a-z)."""


def base62_checksum(entropy: bytes) -> bytes:
    """CRC-32 of `entropy`, in base 62, left-padded with `0` to six digits.

    GitHub's token format ("Behind GitHub's new authentication token formats", GitHub blog,
    2021-04-05) and npm's ("npm has a new access token format", GitHub changelog, 2021-09-23)
    end a token with this checksum of its 30 random characters, so a scanner can tell a real
    token from a look-alike without asking the issuer.
    """
    value = zlib.crc32(entropy) & 0xFFFFFFFF
    digits = bytearray()
    while value:
        value, digit = divmod(value, 62)
        digits.append(BASE62[digit])
    return bytes(reversed(digits)).rjust(6, b"0")


def _crc32_tail_valid(token: bytes, prefix_length: int) -> bool:
    body = token[prefix_length:]
    return len(body) == 36 and base62_checksum(body[:30]) == body[30:]


@dataclass(frozen=True, slots=True)
class SecretFormat:
    """One documented secret format.

    - `rule`: the `secrets/<kind>` rule its findings carry.
    - `title`: what it is, for the finding's message.
    - `literals`: byte strings one of which every match contains (the prefilter's needles).
    - `pattern`: the whole secret; group `value` is what is masked and fingerprinted.
    - `before`: how far before a literal's start a match may begin (0 when the literal is the
      secret's first bytes); then `anchor` is the match's own first bytes, looked for
      backwards from the literal (a regex tried at every position of the window would
      backtrack far too much).
    - `valid`: a structural check of the value (a checksum), or None.
    - `shown`: how many leading bytes of the value are the issuer's fixed prefix, safe to show.
    - `advice`: what to do, for the message.
    - `random_after`: when set, only what follows the last occurrence of this byte is the
      random part that placeholder detection judges (the numeric ids before a Slack token's
      secret, or a webhook URL's path, are not random).
    """

    rule: Rule
    title: str
    literals: tuple[bytes, ...]
    pattern: re.Pattern[bytes]
    shown: int
    advice: str
    before: int = 0
    anchor: bytes = b""
    valid: Callable[[bytes], bool] | None = None
    random_after: bytes = b""


MAX_SECRET: Final = 600
"""No format's match is longer than this many bytes (PEM: header and the body sample)."""

_REVOKE = "revoke it with its issuer, then remove it from the release"

# PEM (RFC 7468) and OpenSSH (PROTOCOL.key) private-key armour. The label names the kind;
# the body that must follow (checked by `bot.engine.secrets_scan`) tells a key from a parser
# that merely names the header. Lines may be separated by real newlines or by `\n` escapes
# (a key inlined into JS, JSON or a service-account key file).
PEM_HEADER: Final = re.compile(
    rb"-----BEGIN (?P<label>(?:RSA |DSA |EC |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?)"
    rb"-----"
)

FORMATS: Final[tuple[SecretFormat, ...]] = (
    # https://github.blog/2021-04-05-behind-githubs-new-authentication-token-formats/ and
    # docs.github.com "About authentication to GitHub" (token prefixes): ghp_ personal (classic),
    # gho_ OAuth, ghu_ user-to-server, ghs_ server-to-server, ghr_ refresh; 36 base62 characters
    # after the prefix, the last 6 a CRC-32 checksum.
    SecretFormat(
        rule=Rule.SECRET_GITHUB,
        title="GitHub token",
        literals=(b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_"),
        pattern=re.compile(_START + rb"(?P<value>gh[pousr]_[A-Za-z0-9]{36})" + _END),
        shown=4,
        valid=lambda value: _crc32_tail_valid(value, 4),
        advice=_REVOKE,
    ),
    # Fine-grained personal access tokens: `github_pat_`, 22 characters, `_`, 59 characters.
    SecretFormat(
        rule=Rule.SECRET_GITHUB,
        title="GitHub fine-grained personal access token",
        literals=(b"github_pat_",),
        pattern=re.compile(
            _START + rb"(?P<value>github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})" + _END
        ),
        shown=11,
        advice=_REVOKE,
    ),
    # npm access tokens: `npm_` and 36 base62 characters ending in the same CRC-32 checksum.
    SecretFormat(
        rule=Rule.SECRET_NPM,
        title="npm access token",
        literals=(b"npm_",),
        pattern=re.compile(_START + rb"(?P<value>npm_[A-Za-z0-9]{36})" + _END),
        shown=4,
        valid=lambda value: _crc32_tail_valid(value, 4),
        advice=_REVOKE,
    ),
    # docs.aws.amazon.com IAM "Manage access keys" / "Unique identifiers": access key ids start
    # AKIA (long-term) or ASIA (temporary) and are 20 characters of A-Z and 2-7. An id alone is
    # not a credential; `bot.engine.secrets_scan` reports it only with a secret access key (40
    # base64 characters) close by.
    SecretFormat(
        rule=Rule.SECRET_AWS,
        title="AWS access key",
        literals=(b"AKIA", b"ASIA"),
        pattern=re.compile(_START + rb"(?P<value>A[KS]IA[A-Z2-7]{16})(?![A-Za-z0-9])"),
        shown=4,
        advice="deactivate the key in IAM, then remove it from the release",
    ),
    SecretFormat(
        rule=Rule.SECRET_PRIVATE_KEY,
        title="private key",
        literals=(b"-----BEGIN ",),
        pattern=PEM_HEADER,
        shown=0,
        advice="treat the key as compromised: replace it, then remove it from the release",
    ),
    # api.slack.com/authentication/token-types: xoxb- bot, xoxp- user, xoxa-/xoxr-/xoxs-
    # workspace, refresh and legacy tokens: numeric team/user ids, then a random part.
    SecretFormat(
        rule=Rule.SECRET_SLACK,
        title="Slack token",
        literals=(b"xoxb-", b"xoxp-", b"xoxa-", b"xoxr-", b"xoxs-", b"xoxe-"),
        pattern=re.compile(
            _START + rb"(?P<value>xox[abeprs]-(?:[0-9]{4,}-){1,3}[A-Za-z0-9]{16,64})" + _END
        ),
        shown=5,
        advice=_REVOKE,
        random_after=b"-",
    ),
    # api.slack.com/messaging/webhooks: https://hooks.slack.com/services/T…/B…/<24 characters>.
    SecretFormat(
        rule=Rule.SECRET_SLACK,
        title="Slack incoming webhook URL",
        literals=(b"hooks.slack.com/services/",),
        pattern=re.compile(
            rb"(?P<value>hooks\.slack\.com/services/T[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{20,32})"
            + _END
        ),
        shown=26,
        advice="regenerate the webhook in Slack, then remove it from the release",
        random_after=b"/",
    ),
    # docs.stripe.com/keys: live secret keys `sk_live_`, restricted keys `rk_live_` (test-mode
    # keys, `sk_test_`, reach no money and are not reported).
    SecretFormat(
        rule=Rule.SECRET_STRIPE,
        title="Stripe live secret key",
        literals=(b"sk_live_", b"rk_live_"),
        pattern=re.compile(_START + rb"(?P<value>[sr]k_live_[A-Za-z0-9]{20,247})" + _END),
        shown=8,
        advice="roll the key in the Stripe dashboard, then remove it from the release",
    ),
    # cloud.google.com/docs/authentication/api-keys: `AIza` and 35 characters. Firebase web
    # configs ship such keys on purpose (restricted by referrer): allow one by its fingerprint.
    SecretFormat(
        rule=Rule.SECRET_GOOGLE,
        title="Google API key",
        literals=(b"AIza",),
        pattern=re.compile(_START + rb"(?P<value>AIza[A-Za-z0-9_-]{35})(?![A-Za-z0-9_-])"),
        shown=4,
        advice="restrict or delete the key in the Google Cloud console",
    ),
    # Google OAuth client secrets: `GOCSPX-` and 28 characters.
    SecretFormat(
        rule=Rule.SECRET_GOOGLE,
        title="Google OAuth client secret",
        literals=(b"GOCSPX-",),
        pattern=re.compile(_START + rb"(?P<value>GOCSPX-[A-Za-z0-9_-]{28})(?![A-Za-z0-9_-])"),
        shown=7,
        advice="reset the client secret in the Google Cloud console",
    ),
    # OpenAI API keys: `sk-`, optionally `proj-`/`svcacct-`/`admin-`, with `T3BlbkFJ` (base64
    # of "OpenAI") in the middle; the marker is what makes the format distinctive.
    SecretFormat(
        rule=Rule.SECRET_OPENAI,
        title="OpenAI API key",
        literals=(b"T3BlbkFJ",),
        pattern=re.compile(
            _START
            + rb"(?P<value>sk-(?:(?:proj|svcacct|admin)-)?[A-Za-z0-9_-]{16,250}T3BlbkFJ"
            + rb"[A-Za-z0-9_-]{16,250})(?![A-Za-z0-9_-])"
        ),
        shown=3,
        before=270,
        anchor=b"sk-",
        advice=_REVOKE,
    ),
    # Anthropic API keys: `sk-ant-api03-` (admin keys `sk-ant-admin01-`) and about 95 characters.
    SecretFormat(
        rule=Rule.SECRET_ANTHROPIC,
        title="Anthropic API key",
        literals=(b"sk-ant-",),
        pattern=re.compile(
            _START
            + rb"(?P<value>sk-ant-(?:api|admin)[0-9]{2}-[A-Za-z0-9_-]{80,120})(?![A-Za-z0-9_-])"
        ),
        shown=7,
        advice=_REVOKE,
    ),
    # docs.gitlab.com "Token prefixes": glpat- personal, gldt- deploy, glrt- runner tokens; 20
    # characters, or the longer routable format with dot-separated parts.
    SecretFormat(
        rule=Rule.SECRET_GITLAB,
        title="GitLab token",
        literals=(b"glpat-", b"gldt-", b"glrt-"),
        pattern=re.compile(
            _START
            + rb"(?P<value>(?:glpat|gldt|glrt)-[A-Za-z0-9_-]{20,}(?:\.[A-Za-z0-9_.-]{2,})?)"
            + rb"(?![A-Za-z0-9_-])"
        ),
        shown=6,
        advice=_REVOKE,
    ),
    # docs.pypi.org "API tokens": macaroons serialised as `pypi-` + base64, whose first bytes
    # encode the location `pypi.org` (`AgEIcHlwaS5vcmc`) or `test.pypi.org`.
    SecretFormat(
        rule=Rule.SECRET_PYPI,
        title="PyPI API token",
        literals=(b"pypi-AgEIcHlwaS5vcmc", b"pypi-AgENdGVzdC5weXBpLm9yZw"),
        pattern=re.compile(
            _START
            + rb"(?P<value>pypi-(?:AgEIcHlwaS5vcmc|AgENdGVzdC5weXBpLm9yZw)[A-Za-z0-9_-]{50,})"
            + rb"(?![A-Za-z0-9_-])"
        ),
        shown=5,
        advice=_REVOKE,
    ),
    # SendGrid API keys: `SG.`, 22 characters, `.`, 43 characters.
    SecretFormat(
        rule=Rule.SECRET_SENDGRID,
        title="SendGrid API key",
        literals=(b"SG.",),
        pattern=re.compile(
            _START + rb"(?P<value>SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43})(?![A-Za-z0-9_-])"
        ),
        shown=3,
        advice=_REVOKE,
    ),
    # shopify.dev "Access tokens": shpat_ admin API, shpca_ custom app, shppa_ private app access
    # tokens, shpss_ shared secrets; 32 hexadecimal digits.
    SecretFormat(
        rule=Rule.SECRET_SHOPIFY,
        title="Shopify access token",
        literals=(b"shpat_", b"shpca_", b"shppa_", b"shpss_"),
        pattern=re.compile(_START + rb"(?P<value>shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32})" + _END),
        shown=6,
        advice=_REVOKE,
    ),
    # huggingface.co/docs/hub/security-tokens: user access tokens `hf_` and 34 letters.
    SecretFormat(
        rule=Rule.SECRET_HUGGINGFACE,
        title="Hugging Face access token",
        literals=(b"hf_",),
        pattern=re.compile(_START + rb"(?P<value>hf_[A-Za-z]{34})" + _END),
        shown=3,
        advice=_REVOKE,
    ),
)
"""Every format, in the order findings for one position are tried."""

AWS_SECRET: Final = re.compile(
    rb"(?<![A-Za-z0-9+/\\])(?P<value>(?:[A-Za-z0-9+]|\\?/){40})(?![A-Za-z0-9+/=])"
)
r"""An AWS secret access key: 40 base64 characters (a `/` may be JSON-escaped as `\/`)."""

AWS_PAIR_WINDOW: Final = 300
"""How close (bytes, either side) a secret access key must be to its access key id."""
