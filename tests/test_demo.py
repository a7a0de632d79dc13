"""`release-guard demo` plays the whole App flow on loopback and says what happened."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bot.cli.demo import actions_artifact, npm_tarball, run_demo
from bot.engine.policy import Policy
from bot.engine.scan import scan_path
from bot.settings import Settings
from bot.store import JobState, store_for


def test_demo_artifacts_are_what_they_claim(tmp_path: Path) -> None:
    leaky = tmp_path / "leaky.zip"
    leaky.write_bytes(actions_artifact(npm_tarball(leaky=True)))
    fixed = tmp_path / "fixed.zip"
    fixed.write_bytes(actions_artifact(npm_tarball(leaky=False)))
    assert {f.rule.value for f in scan_path(leaky, policy=Policy()).findings} == {
        "sourcemap/embedded-sources",
        "sourcemap/reference",
    }
    assert scan_path(fixed, policy=Policy()).findings == []
    assert npm_tarball(leaky=True) == npm_tarball(leaky=True)  # the same bytes every run


@pytest.mark.asyncio
async def test_the_demo_runs_as_designed_and_leaves_its_jobs(tmp_path: Path) -> None:
    settings = Settings.for_data_dir(tmp_path / "data")
    out = io.StringIO()
    assert await run_demo(settings, out) == 0
    text = out.getvalue()
    assert "conclusion failure" in text and "conclusion success" in text
    # The draft-first release: the leaky draft is rejected at the gate, the fixed one approved.
    step3 = text.split("== 3.")[1].split("== 4.")[0]
    assert "App → GitHub: rejected the deployment to `release`" in step3
    assert "App → GitHub: approved the deployment to `release`" in step3
    assert "asset(s) of draft release v1.0.0" in step3
    assert "nothing leaky became public" in step3
    assert "reaction eyes" in text
    assert "The demo ran as designed." in text
    assert "annotation failure package.json:" in text
    # Both failing uploads are kept: the pull request's artifact and the draft's asset.
    assert "npm-package" in text.split("== 5.")[1]
    assert "leaky-cli-1.0.0.tgz" in text.split("== 5.")[1]
    store = store_for(settings, create=False)
    await store.open()
    try:
        jobs = await store.list_jobs()
    finally:
        await store.close()
    assert len(jobs) >= 4
    assert all(job.state is JobState.DONE for job in jobs)
