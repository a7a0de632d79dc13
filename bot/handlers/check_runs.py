"""The `release-guard` check run: find or create it, and send it what a job concluded.

One job reports on one check run. Its id is remembered in the job (`JobContext`), so a job
that runs again after a crash updates the check run it opened instead of adding a second; a
job that finds a `release-guard` run of its own still open on the commit (one queued while the
builds ran) takes that one over.
"""

from __future__ import annotations

from typing import Any, Final

from bot.checks.output import CheckOutput, CheckRunUpdate
from bot.events import RESCAN_ACTION
from bot.github import GitHubClient
from bot.jobs import JobContext

CHECK_NAME: Final = "release-guard"

RESCAN_BUTTON: Final[dict[str, str]] = {
    "label": "Rescan",  # at most 20 characters
    "description": "Scan this commit's artifacts again",  # at most 40
    "identifier": RESCAN_ACTION,  # at most 20
}
"""The check run's "Rescan" button: pressing it sends `check_run.requested_action`.

https://docs.github.com/en/rest/guides/using-the-rest-api-to-interact-with-checks#check-runs-and-requested-actions
"""


async def find_open_check_run(
    gh: GitHubClient, repository: str, head_sha: str, *, app_id: int
) -> int | None:
    """Return this App's newest `release-guard` check run on the commit that is not completed.

    https://docs.github.com/en/rest/checks/runs#list-check-runs-for-a-git-reference
    """
    async for run in gh.getiter(
        f"/repos/{repository}/commits/{head_sha}/check-runs{{?check_name,filter,per_page}}",
        url_vars={"check_name": CHECK_NAME, "filter": "latest", "per_page": "100"},
        iterable_key="check_runs",
    ):
        if _owned_by(run, app_id) and run.get("status") != "completed":
            return int(run["id"])
    return None


def _owned_by(run: dict[str, Any], app_id: int) -> bool:
    app = run.get("app")
    return not isinstance(app, dict) or app.get("id") in (None, app_id)


async def create_check_run(
    gh: GitHubClient,
    repository: str,
    head_sha: str,
    *,
    external_id: str,
    output: CheckOutput,
    details_url: str | None = None,
) -> int:
    """Open a queued `release-guard` check run on the commit; return its id.

    https://docs.github.com/en/rest/checks/runs#create-a-check-run
    """
    body: dict[str, Any] = {
        "name": CHECK_NAME,
        "head_sha": head_sha,
        "status": "queued",
        "external_id": external_id,
        "output": output.to_api(),
    }
    if details_url:
        body["details_url"] = details_url
    created = await gh.post(f"/repos/{repository}/check-runs", data=body)
    return int(created["id"])


async def ensure_check_run(
    gh: GitHubClient,
    repository: str,
    head_sha: str,
    ctx: JobContext,
    *,
    app_id: int,
    external_id: str,
    take_over: bool = True,
    details_url: str | None = None,
    queued: CheckOutput | None = None,
) -> int:
    """Return the check run this job reports on: remembered, taken over, or new.

    With `take_over` False an open run of another job is left alone and a new one is opened
    (a release or a deployment gate reports apart from the commit's pull-request check);
    `details_url` and `queued` (the output it opens with) apply to a new run only.
    """
    if ctx.check_run_id is not None:
        return ctx.check_run_id
    check_run_id = (
        await find_open_check_run(gh, repository, head_sha, app_id=app_id) if take_over else None
    )
    if check_run_id is None:
        check_run_id = await create_check_run(
            gh,
            repository,
            head_sha,
            external_id=external_id,
            output=queued
            or CheckOutput(
                title="Queued",
                summary="release-guard is about to check this commit's build artifacts.",
            ),
            details_url=details_url,
        )
    await ctx.set_check_run(check_run_id)
    return check_run_id


async def publish(
    gh: GitHubClient,
    repository: str,
    check_run_id: int,
    update: CheckRunUpdate,
    *,
    actions: tuple[dict[str, str], ...] | None = None,
) -> str | None:
    """Send `update`: the verdict with the first 50 annotations, then the rest, 50 at a time.

    `actions` (such as `RESCAN_BUTTON`) go with the verdict; None leaves the run's buttons as
    they are. Return the check run's web page (`html_url`), for links to it.

    https://docs.github.com/en/rest/checks/runs#update-a-check-run
    """
    html_url: str | None = None
    for index, body in enumerate(update.requests()):
        if index == 0 and actions is not None:
            body = {**body, "actions": list(actions)}
        answer = await gh.patch(f"/repos/{repository}/check-runs/{check_run_id}", data=body)
        if isinstance(answer, dict) and isinstance(answer.get("html_url"), str):
            html_url = answer["html_url"]
    return html_url


async def get_check_run(
    gh: GitHubClient, repository: str, head_sha: str, check_run_id: int
) -> dict[str, Any] | None:
    """Return one `release-guard` check run of the commit as GitHub shows it, or None.

    Found through the commit's list (filter `all`), which also gives its `html_url`.
    https://docs.github.com/en/rest/checks/runs#list-check-runs-for-a-git-reference
    """
    async for run in gh.getiter(
        f"/repos/{repository}/commits/{head_sha}/check-runs{{?check_name,filter,per_page}}",
        url_vars={"check_name": CHECK_NAME, "filter": "all", "per_page": "100"},
        iterable_key="check_runs",
    ):
        if run.get("id") == check_run_id:
            return dict(run)
    return None


async def offer_rescan(gh: GitHubClient, repository: str, check_run_id: int) -> None:
    """Add the "Rescan" button to a check run (an update that changes nothing else)."""
    await gh.patch(
        f"/repos/{repository}/check-runs/{check_run_id}", data={"actions": [RESCAN_BUTTON]}
    )


def progress_update(message: str) -> CheckRunUpdate:
    """An in-progress update that says what is being done (which artifact is scanned)."""
    return CheckRunUpdate(
        status="in_progress",
        conclusion=None,
        output=CheckOutput(
            title="Scanning build artifacts", summary=f"release-guard is {message}."
        ),
    )
