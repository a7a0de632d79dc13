"""Secret-shaped test values, built at run time from a seeded generator.

No real-looking secret is written in this repository: every true positive is assembled here
from random characters (with its checksum computed, where the format has one), so a push
protection scanner reading the source sees only prefixes and code. Each sample format has a
true positive, a non-secret that is a notice (a documented example value or an obvious
placeholder), and a near miss that must not be reported at all.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

from bot.engine.model import Rule
from bot.engine.secrets_formats import base62_checksum

ALNUM = string.ascii_letters + string.digits
BASE64 = ALNUM + "+/"
URLSAFE = ALNUM + "_-"
BASE32 = string.ascii_uppercase + "234567"


def _rng(name: str) -> random.Random:
    return random.Random(f"release-guard secret sample {name}")


def _pick(rng: random.Random, alphabet: str, count: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(count))


def checksummed(prefix: str, rng: random.Random) -> str:
    """A GitHub/npm-style token with a valid CRC-32 base62 checksum."""
    entropy = _pick(rng, ALNUM, 30)
    return prefix + entropy + base62_checksum(entropy.encode()).decode()


def _wrong_checksum(token: str) -> str:
    last = token[-1]
    return token[:-1] + ("A" if last != "A" else "B")


def _begin(label: str) -> str:
    """A PEM armour line, built at run time so no key header stands in the committed source."""
    return f"-----BEGIN {label}-----"


def _end(label: str) -> str:
    return f"-----END {label}-----"


def _pem(label: str, rng: random.Random) -> str:
    body = "MII" + _pick(rng, BASE64, 61) + "\n" + _pick(rng, BASE64, 64) + "\n"
    body += _pick(rng, BASE64, 64) + "\n" + _pick(rng, BASE64, 40) + "==\n"
    return f"{_begin(label)}\n{body}{_end(label)}"


@dataclass(frozen=True)
class Sample:
    """One format's values. `secret` is a true positive; `shown` is its fixed prefix."""

    name: str
    rule: Rule
    secret: str
    shown: str
    notice: str
    near_miss: str


def _samples() -> list[Sample]:
    out: list[Sample] = []

    def add(name: str, rule: Rule, secret: str, shown: str, notice: str, near: str) -> None:
        out.append(Sample(name, rule, secret, shown, notice, near))

    r = _rng("github")
    classic = checksummed("ghp_", r)
    add(
        "github-classic",
        Rule.SECRET_GITHUB,
        classic,
        "ghp_",
        "ghp_" + "x" * 36,
        _wrong_checksum(classic),
    )
    for prefix in ("gho_", "ghu_", "ghs_", "ghr_"):
        token = checksummed(prefix, _rng(prefix))
        add(
            f"github-{prefix[:3]}",
            Rule.SECRET_GITHUB,
            token,
            prefix,
            prefix + "0" * 36,
            _wrong_checksum(token),
        )
    r = _rng("github_pat")
    add(
        "github-fine-grained",
        Rule.SECRET_GITHUB,
        "github_pat_" + _pick(r, ALNUM, 22) + "_" + _pick(r, ALNUM, 59),
        "github_pat_",
        "github_pat_" + "X" * 22 + "_" + "X" * 59,
        "github_pat_" + _pick(r, ALNUM, 22) + "_" + _pick(r, ALNUM, 40),
    )
    npm = checksummed("npm_", _rng("npm"))
    add("npm", Rule.SECRET_NPM, npm, "npm_", "npm_" + "x" * 36, _wrong_checksum(npm))
    r = _rng("aws")
    key_id = "AKIA" + _pick(r, BASE32, 16)
    secret_key = _pick(r, BASE64, 38) + "aZ"
    add(
        "aws",
        Rule.SECRET_AWS,
        f"aws_access_key_id = {key_id}\naws_secret_access_key = {secret_key}",
        "AKIA",
        # The documented example pair from the IAM user guide.
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        # An id without a secret key, and a SHA-1 (one case only) that is not one.
        f"key = {key_id}\ncommit = {_pick(r, '0123456789abcdef', 40)}",
    )
    r = _rng("pem")
    add(
        "pem-rsa",
        Rule.SECRET_PRIVATE_KEY,
        _pem("RSA PRIVATE KEY", r),
        _begin("RSA PRIVATE KEY"),
        _begin("PRIVATE KEY") + "\n" + "A" * 64 + "\n" + "A" * 64 + "\n" + _end("PRIVATE KEY"),
        f'if (text.startsWith("{_begin("RSA PRIVATE KEY")}")) {{ return parse(text); }}',
    )
    add(
        "openssh",
        Rule.SECRET_PRIVATE_KEY,
        _begin("OPENSSH PRIVATE KEY")
        + "\nb3BlbnNzaC1rZXktdjEAAAAA"
        + _pick(r, BASE64, 46)
        + "\n"
        + _pick(r, BASE64, 70)
        + "\n"
        + _end("OPENSSH PRIVATE KEY"),
        _begin("OPENSSH PRIVATE KEY"),
        _begin("OPENSSH PRIVATE KEY") + "\n" + "x" * 70 + "\n" + _end("OPENSSH PRIVATE KEY"),
        f"const HEADER = '{_begin('OPENSSH PRIVATE KEY')}';\nconst x = 1;",
    )
    r = _rng("slack")
    add(
        "slack-token",
        Rule.SECRET_SLACK,
        "xoxb-"
        + _pick(r, string.digits, 12)
        + "-"
        + _pick(r, string.digits, 13)
        + "-"
        + _pick(r, ALNUM, 24),
        "xoxb-",
        "xoxb-" + _pick(r, string.digits, 12) + "-" + _pick(r, string.digits, 13) + "-" + "x" * 24,
        "xoxb-" + _pick(r, string.digits, 12) + "-short",
    )
    add(
        "slack-webhook",
        Rule.SECRET_SLACK,
        "https://hooks.slack.com/services/T"
        + _pick(r, BASE32, 8)
        + "/B"
        + _pick(r, BASE32, 8)
        + "/"
        + _pick(r, ALNUM, 24),
        "hooks.slack.com/services/T",
        # Slack's own documentation example.
        "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        "https://hooks.slack.com/services/your/webhook/here",
    )
    r = _rng("stripe")
    add(
        "stripe",
        Rule.SECRET_STRIPE,
        "sk_live_" + _pick(r, ALNUM, 24),
        "sk_live_",
        "sk_live_" + "x" * 24,
        "sk_test_" + _pick(r, ALNUM, 24),
    )
    r = _rng("google")
    add(
        "google-api-key",
        Rule.SECRET_GOOGLE,
        "AIza" + _pick(r, URLSAFE, 35),
        "AIza",
        "AIza" + "X" * 35,
        "AIza" + _pick(r, ALNUM, 20),
    )
    add(
        "google-oauth",
        Rule.SECRET_GOOGLE,
        "GOCSPX-" + _pick(r, URLSAFE, 28),
        "GOCSPX-",
        "GOCSPX-" + "your_client_secret_here_xxxx",
        "GOCSPX-" + _pick(r, ALNUM, 10),
    )
    r = _rng("openai")
    add(
        "openai",
        Rule.SECRET_OPENAI,
        "sk-proj-" + _pick(r, URLSAFE, 40) + "T3BlbkFJ" + _pick(r, URLSAFE, 40),
        "sk-",
        "sk-proj-" + "x" * 40 + "T3BlbkFJ" + "x" * 40,
        "marker T3BlbkFJ" + _pick(r, ALNUM, 40) + " without the sk- prefix",
    )
    r = _rng("anthropic")
    add(
        "anthropic",
        Rule.SECRET_ANTHROPIC,
        "sk-ant-api03-" + _pick(r, URLSAFE, 93) + "AA",
        "sk-ant-",
        "sk-ant-api03-" + "x" * 95,
        "sk-ant-api03-" + _pick(r, ALNUM, 30),
    )
    r = _rng("gitlab")
    add(
        "gitlab",
        Rule.SECRET_GITLAB,
        "glpat-" + _pick(r, URLSAFE, 20),
        "glpat-",
        "glpat-" + "x" * 20,
        "glpat-" + _pick(r, ALNUM, 12),
    )
    r = _rng("pypi")
    add(
        "pypi",
        Rule.SECRET_PYPI,
        "pypi-AgEIcHlwaS5vcmc" + _pick(r, URLSAFE, 120),
        "pypi-",
        "pypi-AgEIcHlwaS5vcmc" + "x" * 120,
        "pypi-AgEIcHlwaS5vcmc" + _pick(r, ALNUM, 20),
    )
    r = _rng("sendgrid")
    add(
        "sendgrid",
        Rule.SECRET_SENDGRID,
        "SG." + _pick(r, URLSAFE, 22) + "." + _pick(r, URLSAFE, 43),
        "SG.",
        "SG." + "x" * 22 + "." + "x" * 43,
        "SG." + _pick(r, ALNUM, 22) + "." + _pick(r, ALNUM, 20),
    )
    r = _rng("shopify")
    add(
        "shopify",
        Rule.SECRET_SHOPIFY,
        "shpat_" + _pick(r, "0123456789abcdef", 32),
        "shpat_",
        "shpat_" + "0" * 32,
        "shpat_" + _pick(r, "ghijklmnop", 32),
    )
    r = _rng("huggingface")
    add(
        "huggingface",
        Rule.SECRET_HUGGINGFACE,
        "hf_" + _pick(r, string.ascii_letters, 34),
        "hf_",
        "hf_" + "x" * 34,
        "hf_" + _pick(r, string.ascii_letters, 20),
    )
    return out


SAMPLES: list[Sample] = _samples()
SAMPLE_IDS = [sample.name for sample in SAMPLES]


def raw_values(sample: Sample) -> list[str]:
    """The parts of a true positive that must never appear unmasked in any output."""
    if sample.rule is Rule.SECRET_AWS:
        return [line.split(" = ")[1] for line in sample.secret.splitlines()]
    if sample.rule is Rule.SECRET_PRIVATE_KEY:
        return [line for line in sample.secret.splitlines() if not line.startswith("-----")]
    start = sample.secret.find(sample.shown) + len(sample.shown)
    return [sample.secret[start:]]
