"""No secret leaves a scan unmasked: every report format, the check run's summary and
annotations, the CLI's output and the retained metadata in the store are searched for the raw
value of every sample secret."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from bot.checks.output import SummaryContext, annotations_for, render_summary
from bot.cli.main import main
from bot.engine.model import Report
from bot.engine.policy import Policy
from bot.engine.scan import scan_path
from bot.report import render
from bot.retention import BlobStore, Retainer, RetentionMeta, RetentionPolicy
from bot.retention.retainer import SPOOL_FOLDER
from bot.store import SqliteStore
from tests.apphelpers import SHA_A, FakeClock
from tests.archives import Member, tar_bytes, write
from tests.secret_samples import SAMPLES, raw_values

FORMATS = ("text", "json", "sarif", "github")


def _leaky(tmp_path: Path) -> Path:
    """One package holding every sample secret, each in its own file."""
    members = [
        Member(f"package/dist/{sample.name}.js", f'const v = "{sample.secret}";\n'.encode())
        for sample in SAMPLES
    ]
    return write(tmp_path, "leaky-1.0.0.tgz", tar_bytes(members, compression="gz"))


def _raw() -> list[str]:
    values = [raw for sample in SAMPLES for raw in raw_values(sample)]
    assert all(len(value) >= 16 for value in values)
    return values


def _assert_clean(text: str, where: str) -> None:
    for raw in _raw():
        assert raw not in text, f"{where} shows a secret unmasked"


def test_every_report_format_and_the_check_run_show_secrets_masked(tmp_path: Path) -> None:
    artifact = scan_path(_leaky(tmp_path), policy=Policy())
    report = Report(artifacts=[artifact])
    secrets = [f for f in artifact.findings if f.rule.is_secret]
    assert {f.rule for f in secrets} == {sample.rule for sample in SAMPLES}
    assert len(secrets) == len(SAMPLES)
    for fmt in FORMATS:
        _assert_clean(render(report, fmt), fmt)
    context = SummaryContext(head_sha=SHA_A, job_id="1")
    summary = render_summary(report, context=context)
    assert "secrets/github-token" in summary
    _assert_clean(summary, "check-run summary")
    annotations = annotations_for(report, locate=lambda _: None, fallback_path="package.json")
    assert len(annotations) == len(artifact.findings)
    _assert_clean(json.dumps([a.to_api() for a in annotations]), "annotations")


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_cli_output_is_masked(
    tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _leaky(tmp_path)
    assert main(["scan", "--format", fmt, str(path)]) == 1
    out, err = capsys.readouterr()
    assert "secrets/" in out
    _assert_clean(out, f"scan --format {fmt}")
    _assert_clean(err, "stderr")


@pytest.mark.asyncio
async def test_the_store_and_retained_metadata_hold_no_raw_secret(tmp_path: Path) -> None:
    path = _leaky(tmp_path)
    report = scan_path(path, policy=Policy())
    data = tmp_path / "data"
    clock = FakeClock(time.time())
    store = SqliteStore(data / "release-guard.sqlite3", clock=clock)
    await store.open()
    try:
        blobs = BlobStore.from_url((tmp_path / "store").as_uri(), {})
        retainer = Retainer(
            blobs, store, RetentionPolicy(), spool_dir=data / SPOOL_FOLDER, clock=clock
        )
        meta = RetentionMeta(repository="octo-org/octo-repo", commit=SHA_A, installation_id=42)
        ref = await retainer.retain(path, artifact_report=report, meta=meta)
        assert ref is not None and ref.kept
        record = await store.get_retained(ref.id[:8])
        assert record is not None
        document = json.dumps(record.to_json())
        assert "secrets/github-token" in document
        _assert_clean(document, "retained metadata")
    finally:
        await store.close()
    for database in data.glob("release-guard.sqlite3*"):
        _assert_clean(database.read_bytes().decode("latin-1"), database.name)
