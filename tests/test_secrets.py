"""The `secrets/*` rules: every format's true positive, documented example or placeholder, near
miss, a secret split across a read boundary, inside `sourcesContent` (file and inline map) and
inside a nested archive; the fingerprint allowlist; the prefilter's two engines agree."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import pytest

from bot.config import load_policy
from bot.engine import secrets_scan
from bot.engine.model import Rule, Severity
from bot.engine.policy import Policy
from bot.engine.scan import scan_path
from bot.engine.secrets_formats import FORMATS, base62_checksum
from bot.engine.secrets_scan import (
    CONTEXT,
    TAIL,
    Prefilter,
    SecretScanner,
    classify,
    fingerprint,
    redact,
)
from bot.errors import ConfigError
from tests.archives import Member, tar_bytes, write, zip_bytes
from tests.secret_samples import SAMPLE_IDS, SAMPLES, Sample, checksummed, raw_values

MIB = 1 << 20


def _secret_findings(
    path: Path, policy: Policy | None = None
) -> list[tuple[str, str, str, int | None, str]]:
    artifact = scan_path(path, policy=policy or Policy())
    return [
        (f.rule.value, f.severity.value, f.path, f.line, f.message)
        for f in artifact.findings
        if f.rule.is_secret
    ]


def _tgz(tmp_path: Path, members: list[Member], name: str = "pkg-1.0.0.tgz") -> Path:
    return write(tmp_path, name, tar_bytes(members, compression="gz"))


def _assert_masked(message: str, sample: Sample) -> None:
    for raw in raw_values(sample):
        assert raw not in message
    assert f"`{sample.shown}" in message


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize("sample", SAMPLES, ids=SAMPLE_IDS)
def test_true_positive_is_an_error_with_file_line_and_masked_value(
    tmp_path: Path, sample: Sample
) -> None:
    text = f'// config\nexport const settings = {{\n  key: "{sample.secret}",\n}};\n'
    path = _tgz(tmp_path, [Member("package/dist/config.js", text.encode())])
    [(rule, severity, where, line, message)] = _secret_findings(path)
    assert rule == sample.rule.value
    assert severity == "error"
    assert where == "pkg-1.0.0.tgz!/package/dist/config.js"
    assert line == 3
    _assert_masked(message, sample)
    assert "fingerprint sha256:" in message
    assert "characters" in message


@pytest.mark.parametrize("sample", SAMPLES, ids=SAMPLE_IDS)
def test_documented_example_or_placeholder_is_a_notice(tmp_path: Path, sample: Sample) -> None:
    text = f"# README\n\nSet it like this:\n\n    {sample.notice}\n"
    path = _tgz(tmp_path, [Member("package/README.md", text.encode())])
    [(rule, severity, _, line, message)] = _secret_findings(path)
    assert rule == sample.rule.value
    assert severity == "notice"
    assert line == 5
    assert "not a live secret" in message


@pytest.mark.parametrize("sample", SAMPLES, ids=SAMPLE_IDS)
def test_near_miss_is_not_reported(tmp_path: Path, sample: Sample) -> None:
    text = f"const value = `{sample.near_miss}`;\n"
    path = _tgz(tmp_path, [Member("package/index.js", text.encode())])
    assert _secret_findings(path) == []


# Armour, key pairs and URLs have their own boundaries; tokens must not be glued to a word.
_TOKENS = [
    s
    for s in SAMPLES
    if s.rule not in (Rule.SECRET_PRIVATE_KEY, Rule.SECRET_AWS) and s.name != "slack-webhook"
]


@pytest.mark.parametrize("sample", _TOKENS, ids=[s.name for s in _TOKENS])
def test_secret_glued_to_a_word_is_not_a_match(sample: Sample) -> None:
    scanner = SecretScanner("x")
    scanner.feed(("word" + sample.secret + "\n").encode())
    assert scanner.close() == []


@pytest.mark.parametrize("sample", SAMPLES, ids=SAMPLE_IDS)
@pytest.mark.parametrize("lines", [(TAIL + CONTEXT) // 7 + 50, 8 * (TAIL + CONTEXT) // 7])
def test_every_split_across_chunks_is_found_once(sample: Sample, lines: int) -> None:
    """Feed the secret in chunks cut at every offset across it, after an unrelated prefix.

    Chunks shorter than `2 * (CONTEXT + TAIL)` are joined to the held bytes, longer ones are
    searched in place: the two prefix lengths take both paths, and the secret is either in
    the held tail, in the junction, or in a chunk's body.
    """
    prefix = b"a = 1;\n" * lines
    data = prefix + sample.secret.encode() + b"\nb = 2;\n" + b"c = 3;\n" * lines
    start = len(prefix)
    for cut in range(start - 2, start + len(sample.secret) + 2):
        for pieces in ([data[:cut], data[cut:]], [data[: cut - TAIL], data[cut - TAIL :]]):
            scanner = SecretScanner("f.js")
            for piece in pieces:
                scanner.feed(piece)
            found = scanner.close()
            assert [o.rule for o in found] == [sample.rule], cut
            assert found[0].line == prefix.count(b"\n") + 1


@pytest.mark.parametrize("defer", [0, 4096, 8 << 20])
def test_lines_are_right_whether_their_count_waits_or_not(
    monkeypatch: pytest.MonkeyPatch, defer: int
) -> None:
    """Newlines may be counted late (only when a finding needs them) within a bound."""
    monkeypatch.setattr(secrets_scan, "DEFER_LINES", defer)
    rng = random.Random(17)
    first, second = checksummed("ghp_", rng), checksummed("npm_", rng)
    block = b"line\n" * 3000
    data = block + first.encode() + b"\n" + block * 3 + second.encode() + b"\n" + block
    scanner = SecretScanner("f.js")
    start, sizes = 0, [5000, 20000, 3000]  # joined and direct chunks alike
    while start < len(data):
        size = sizes[start % 3]
        scanner.feed(data[start : start + size])
        start += size
    lines = [o.line for o in scanner.close()]
    assert lines == [3001, 3001 + 1 + 9000]


def test_one_byte_chunks_find_what_one_chunk_finds() -> None:
    data = "\n".join(f"x{i} = '{s.secret}';" for i, s in enumerate(SAMPLES)).encode()
    whole, bytewise = SecretScanner("f"), SecretScanner("f")
    whole.feed(data)
    for index in range(len(data)):
        bytewise.feed(data[index : index + 1])
    assert whole.close() == bytewise.close()
    assert len(whole.observations) == len(SAMPLES)


@pytest.mark.parametrize("sample", SAMPLES, ids=SAMPLE_IDS)
def test_secret_across_the_walks_read_boundary(tmp_path: Path, sample: Sample) -> None:
    """The walk reads a member 1 MiB at a time: put the secret across that boundary."""
    secret = sample.secret.encode()
    lead = b"x = 0;\n" * (MIB // 7)
    filler = b" " * (MIB - len(lead) - len(secret) // 2 - 1) + b"\n"
    data = lead + filler + secret + b"\n" + b"y = 1;\n" * 1000
    assert len(lead + filler) < MIB < len(lead + filler) + len(secret)
    path = _tgz(tmp_path, [Member("package/big.js", data)])
    [(rule, severity, _, line, _)] = _secret_findings(path)
    assert (rule, severity) == (sample.rule.value, "error")
    assert line == (lead + filler).count(b"\n") + 1


@pytest.mark.parametrize("sample", SAMPLES, ids=SAMPLE_IDS)
def test_secret_inside_sources_content(tmp_path: Path, sample: Sample) -> None:
    """In a `.map` file the secret is JSON-escaped text: newlines are `\\n`, quotes `\\"`."""
    original = f'import x from "y";\n\nconst key = "{sample.secret}";\nexport default key;\n'
    source_map = {
        "version": 3,
        "sources": ["../src/config.ts"],
        "sourcesContent": [original],
        "names": [],
        "mappings": "AAAA",
    }
    map_bytes = json.dumps(source_map).encode()
    path = _tgz(tmp_path, [Member("package/dist/index.js.map", map_bytes)])
    findings = _secret_findings(path)
    assert [(r, s, p) for r, s, p, _, _ in findings] == [
        (sample.rule.value, "error", "pkg-1.0.0.tgz!/package/dist/index.js.map")
    ]
    _assert_masked(findings[0][4], sample)


@pytest.mark.parametrize("sample", SAMPLES, ids=SAMPLE_IDS)
def test_secret_inside_an_inline_base64_map(tmp_path: Path, sample: Sample) -> None:
    """Base64 hides an inline map's sources from the file's text: the decoded map is searched."""
    source_map = {
        "version": 3,
        "sources": ["../src/config.ts"],
        "sourcesContent": [f'const key = "{sample.secret}";\n'],
        "mappings": "AAAA",
    }
    payload = base64.b64encode(json.dumps(source_map).encode()).decode()
    code = "console.log(1);\n//# sourceMappingURL=data:application/json;base64," + payload + "\n"
    assert sample.secret not in code
    path = _tgz(tmp_path, [Member("package/dist/index.js", code.encode())])
    [(rule, severity, where, line, message)] = _secret_findings(path)
    assert (rule, severity, where, line) == (
        sample.rule.value,
        "error",
        "pkg-1.0.0.tgz!/package/dist/index.js",
        2,
    )
    assert "inline source map" in message
    _assert_masked(message, sample)


@pytest.mark.parametrize("sample", SAMPLES, ids=SAMPLE_IDS)
def test_secret_inside_a_nested_archive(tmp_path: Path, sample: Sample) -> None:
    inner = tar_bytes(
        [Member("package/lib/settings.json", json.dumps({"token": sample.secret}).encode())],
        compression="gz",
    )
    outer = zip_bytes([Member("npm-package/pkg-1.0.0.tgz", inner)])
    path = write(tmp_path, "artifact.zip", outer)
    [(rule, severity, where, line, _)] = _secret_findings(path)
    assert (rule, severity, line) == (sample.rule.value, "error", 1)
    assert where == "artifact.zip!/npm-package/pkg-1.0.0.tgz!/package/lib/settings.json"


def test_secret_in_a_binary_member_and_a_directory_argument(tmp_path: Path) -> None:
    token = checksummed("ghp_", random.Random(7))
    root = tmp_path / "dist"
    root.mkdir()
    (root / "addon.node").write_bytes(b"\x7fELF\x00\x01" + token.encode() + b"\x00\xff")
    (root / "readme.txt").write_text("nothing here\n")
    [(rule, severity, where, _, _)] = _secret_findings(root)
    assert (rule, severity, where) == ("secrets/github-token", "error", "dist/addon.node")


def test_many_secrets_in_one_file_are_capped(tmp_path: Path) -> None:
    rng = random.Random(3)
    tokens = [checksummed("ghp_", rng) for _ in range(60)]
    path = _tgz(tmp_path, [Member("package/a.js", "\n".join(tokens).encode())])
    findings = _secret_findings(path)
    assert len(findings) == 51
    assert "10 more secrets/github-token findings" in findings[-1][4]


def test_a_file_of_endless_candidates_fails_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`AKIAAKIA…` makes every fourth byte a candidate: past the budget, archive/limit."""
    monkeypatch.setattr(secrets_scan, "MAX_CANDIDATES_PER_FILE", 1000)
    token = checksummed("ghp_", random.Random(13))
    hostile = b"x\n" * 10 + b"AKIA" * 5000 + b"\n" + token.encode() + b"\n"
    path = _tgz(tmp_path, [Member("package/a.bin", hostile), Member("package/b.js", b"ok\n")])
    findings = scan_path(path, policy=Policy()).findings
    [limit] = [f for f in findings if f.rule is Rule.ARCHIVE_LIMIT]
    assert (limit.severity, limit.path, limit.line) == (
        Severity.ERROR,
        "pkg-1.0.0.tgz!/package/a.bin",
        11,
    )
    assert "not searched for secrets" in limit.message
    assert not [f for f in findings if f.rule.is_secret]  # the token after it went unread


def test_the_fallback_prefilter_gives_the_same_findings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the ahocorasick_rs wheel, `bytes.find` per literal finds the same secrets."""
    text = "\n".join(f"v{i} = '{s.secret}'; w = '{s.notice}';" for i, s in enumerate(SAMPLES))
    path = _tgz(tmp_path, [Member("package/all.js", text.encode())])
    fast = _secret_findings(path)
    monkeypatch.setattr(secrets_scan, "_PREFILTER", Prefilter(FORMATS, fast=False))
    assert _secret_findings(path) == fast
    assert len(fast) == 2 * len(SAMPLES)


def test_counted_example_values_stay_notices(tmp_path: Path) -> None:
    """Past the per-file and per-artifact caps the rest is counted: as a notice when every
    counted value is a documented example or placeholder, as an error when one is live."""
    [aws] = [s for s in SAMPLES if s.rule is Rule.SECRET_AWS]
    examples = ("\n\n".join([aws.notice] * 60) + "\n").encode()
    many_files = [Member(f"package/docs/{i}.md", aws.notice.encode()) for i in range(210)]
    path = _tgz(tmp_path, [Member("package/docs/all.md", examples), *many_files])
    artifact = scan_path(path, policy=Policy())
    secrets = [f for f in artifact.findings if f.rule.is_secret]
    assert secrets and {f.severity for f in secrets} == {Severity.NOTICE}
    assert any("more secrets/aws-access-key findings in this file" in f.message for f in secrets)
    assert any("in this artifact, not listed" in f.message for f in secrets)
    live = ("\n\n".join([aws.notice] * 55 + [aws.secret]) + "\n").encode()
    path = _tgz(tmp_path, [Member("package/docs/all.md", live)], name="live.tgz")
    [counted] = [f for f in scan_path(path, policy=Policy()).findings if "more" in f.message]
    assert counted.severity is Severity.ERROR


def test_a_live_key_next_to_the_documented_example_is_an_error(tmp_path: Path) -> None:
    """Pairing prefers a live secret key: AWS's example id cannot launder a real key."""
    [aws] = [s for s in SAMPLES if s.rule is Rule.SECRET_AWS]
    live_secret = raw_values(aws)[1]
    text = f"{aws.notice}\nsecondary_secret = {live_secret}\n"
    path = _tgz(tmp_path, [Member("package/creds.txt", text.encode())])
    [(rule, severity, _, line, _)] = _secret_findings(path)
    assert (rule, severity, line) == ("secrets/aws-access-key", "error", 1)


# --------------------------------------------------------------------------- policy


def test_fingerprint_allowlist_accepts_exactly_that_fixture(tmp_path: Path) -> None:
    rng = random.Random(11)
    fixture, other = checksummed("npm_", rng), checksummed("npm_", rng)
    text = f"const a = '{fixture}';\nconst b = '{other}';\n"
    path = _tgz(tmp_path, [Member("package/test/fixture.js", text.encode())])
    [first, second] = _secret_findings(path)
    shown = first[4].split("fingerprint ")[1].split(":", 2)
    accepted = f"{shown[0]}:{shown[1]}"
    assert accepted == fingerprint(fixture.encode())
    policy = load_policy(f'secrets:\n  allow: ["{accepted}"]\n', path="cfg.yml")
    [(rule, _, _, line, message)] = _secret_findings(path, policy)
    assert (rule, line) == ("secrets/npm-token", 2)
    assert message == second[4]


def test_config_accepts_full_digests_and_refuses_other_values() -> None:
    digest = "ab" * 32
    policy = load_policy(f"secrets:\n  allow:\n    - {digest}\n    - SHA256:{'cd' * 8}\n", path="c")
    assert policy.secret_allow == frozenset({"sha256:" + "ab" * 8, "sha256:" + "cd" * 8})
    with pytest.raises(ConfigError, match="fingerprint") as raised:
        load_policy('secrets:\n  allow:\n    - "ghp_not-a-fingerprint"\n', path="c")
    assert raised.value.line == 3
    with pytest.raises(ConfigError, match="unknown key 'alow'"):
        load_policy("secrets:\n  alow: []\n", path="c")


def test_config_layers_extend_the_allowlist() -> None:
    base = load_policy(f"secrets:\n  allow: ['{'1' * 16}']\n", path="org")
    policy = load_policy(f"secrets:\n  allow: ['{'2' * 16}']\n", path="repo", base=base)
    assert policy.secret_allow == frozenset({"sha256:" + "1" * 16, "sha256:" + "2" * 16})


def test_rule_severity_is_configurable_but_a_notice_stays_a_notice(tmp_path: Path) -> None:
    [google] = [s for s in SAMPLES if s.name == "google-api-key"]
    text = f"a = '{google.secret}'\nb = '{google.notice}'\n"
    path = _tgz(tmp_path, [Member("package/firebase.js", text.encode())])
    policy = load_policy("rules:\n  secrets/google-api-key: warning\n", path="c")
    assert [(f[1], f[3]) for f in _secret_findings(path, policy)] == [
        ("warning", 1),
        ("notice", 2),
    ]
    off = load_policy("rules:\n  secrets/google-api-key: off\n", path="c")
    assert _secret_findings(path, off) == []


# --------------------------------------------------------------------------- pieces


def test_checksum_matches_githubs_published_scheme() -> None:
    """CRC-32 of the 30 random characters, base62 (0-9A-Za-z), zero-padded to 6 digits."""
    assert base62_checksum(b"") == b"000000"  # crc32(b"") == 0
    value = 0xCBF43926  # the CRC-32 check value: the CRC of b"123456789"
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    expected = ""
    while value:
        value, digit = divmod(value, 62)
        expected = digits[digit] + expected
    assert base62_checksum(b"123456789") == expected.rjust(6, "0").encode()


def test_both_prefilter_engines_find_the_same_hits() -> None:
    text = "\n".join(s.secret + " " + s.notice + " " + s.near_miss for s in SAMPLES).encode()
    fast, slow = Prefilter(FORMATS), Prefilter(FORMATS, fast=False)
    assert fast.fast and not slow.fast
    assert sorted(fast.hits(text)) == sorted(slow.hits(text))
    assert len(slow.hits(text)) >= len(SAMPLES)


def test_classify_random_values_are_secrets_and_words_are_not() -> None:
    rng = random.Random(5)
    for _ in range(200):
        value = "".join(
            rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
            for _ in range(36)
        )
        assert classify(value.encode()) is None or "1234" in value or "0000" in value
    assert classify(b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY") == "a documented example value"
    assert classify(b"your_token_here_0000") == "a placeholder"
    assert classify(b"abcdefghijklmnopqrstuvwxyz") == "a placeholder"


def test_redact_masks_secrets_in_any_text() -> None:
    samples = [s for s in SAMPLES if s.rule not in (Rule.SECRET_AWS, Rule.SECRET_PRIVATE_KEY)]
    text = "see " + " and ".join(s.secret for s in samples) + " (end)"
    redacted = redact(text)
    for sample in samples:
        for raw in raw_values(sample):
            assert raw not in redacted
    assert redacted.endswith(" (end)")
    assert redact("nothing to hide: ghp_short") == "nothing to hide: ghp_short"


def test_sourcemap_reference_url_with_a_token_is_redacted(tmp_path: Path) -> None:
    token = checksummed("ghp_", random.Random(9))
    code = f"x();\n//# sourceMappingURL=https://maps.example.com/a.js.map?access={token}\n"
    path = _tgz(tmp_path, [Member("package/a.js", code.encode())])
    artifact = scan_path(path, policy=Policy())
    reference = [f for f in artifact.findings if f.rule is Rule.REFERENCE]
    assert reference and all(token[4:] not in f.message for f in reference)
    assert any(
        f.rule is Rule.SECRET_GITHUB and f.severity is Severity.ERROR for f in artifact.findings
    )
