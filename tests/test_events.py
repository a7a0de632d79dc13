"""Event models and routing: which (event, action) makes which job, and what is malformed."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.events import (
    COMMAND_PREFIX,
    MAX_COMMENT_CHARS,
    MAX_ID,
    JobKind,
    MalformedPayload,
    route,
)
from tests.apphelpers import SHA_A, SHA_B, Example, examples, pull_request_payload

EXAMPLES = list(examples())

# What each example must make once it comes from an App installation.
EXPECTED: dict[tuple[str, str | None], JobKind | None] = {
    ("pull_request", "opened"): JobKind.CHECK,
    ("pull_request", "synchronize"): JobKind.CHECK,
    ("pull_request", "reopened"): JobKind.CHECK,
    ("check_suite", "requested"): JobKind.CHECK,
    ("check_suite", "rerequested"): JobKind.CHECK,
    ("check_run", "rerequested"): JobKind.CHECK,
    ("workflow_run", "completed"): JobKind.WORKFLOW_RUN,
    ("release", "published"): JobKind.RELEASE,
    ("release", "prereleased"): JobKind.RELEASE,
    ("release", "created"): JobKind.RELEASE,
    ("deployment_protection_rule", "requested"): JobKind.DEPLOYMENT_GATE,
}


def with_installation(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "installation": payload.get("installation") or {"id": 99}}


def test_every_subscribed_event_has_examples() -> None:
    events = {example.event for example in EXAMPLES}
    assert {
        "pull_request",
        "check_suite",
        "check_run",
        "workflow_run",
        "release",
        "deployment_protection_rule",
        "issue_comment",
        "ping",
        "installation",
    } <= events


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.id)
def test_every_example_routes_as_expected(example: Example) -> None:
    routed = route(example.event, with_installation(example.payload))
    action = example.payload.get("action")
    assert routed.action == action
    kind = EXPECTED.get((example.event, action))
    if kind is None:
        assert routed.ignored and not routed.jobs
        return
    (job,) = routed.jobs
    assert job.kind is kind
    assert job.repository == example.payload["repository"]["full_name"]
    assert job.installation_id == with_installation(example.payload)["installation"]["id"]
    assert job.dedupe_key.startswith(f"{kind.value}:{job.repository.lower()}:")
    assert kind is JobKind.RELEASE or job.head_sha is not None


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.id)
def test_examples_without_installation_are_ignored_not_rejected(example: Example) -> None:
    payload = {k: v for k, v in example.payload.items() if k != "installation"}
    routed = route(example.event, payload)
    assert routed.ignored is not None and routed.jobs == ()


def test_pull_request_makes_a_check_on_its_head() -> None:
    routed = route("pull_request", pull_request_payload(action="synchronize", sha=SHA_B))
    (job,) = routed.jobs
    assert job.kind is JobKind.CHECK
    assert (job.installation_id, job.repository, job.head_sha) == (42, "octo-org/octo-repo", SHA_B)
    assert job.details == {
        "event": "pull_request",
        "action": "synchronize",
        "pull_number": 7,
        "head_ref": "feature",
        "head_repository": "octo-org/octo-repo",
    }


def test_deleted_fork_has_no_head_repository() -> None:
    payload = pull_request_payload()
    payload["pull_request"]["head"]["repo"] = None
    (job,) = route("pull_request", payload).jobs
    assert job.details["head_repository"] is None


def test_one_commit_one_dedupe_key_across_events() -> None:
    pr = route("pull_request", pull_request_payload(sha=SHA_A)).jobs[0]
    suite = route(
        "check_suite",
        {
            "action": "requested",
            "check_suite": {"id": 5, "head_sha": SHA_A, "head_branch": "f", "pull_requests": []},
            "repository": {"full_name": "Octo-Org/Octo-Repo"},
            "installation": {"id": 42},
        },
    ).jobs[0]
    assert pr.dedupe_key == suite.dedupe_key == f"check:octo-org/octo-repo:{SHA_A}"


def test_check_suite_keeps_its_pull_numbers() -> None:
    payload = {
        "action": "rerequested",
        "check_suite": {
            "id": 5,
            "head_sha": SHA_A,
            "head_branch": None,
            "pull_requests": [{"number": 3}, {"number": 4}],
        },
        "repository": {"full_name": "o/r"},
        "installation": {"id": 1},
    }
    (job,) = route("check_suite", payload).jobs
    assert job.details["pull_numbers"] == [3, 4]
    assert job.details["check_suite_id"] == 5


def _button(
    identifier: str = "rescan", login: str = "Mona", user_type: str = "User"
) -> dict[str, Any]:
    return {
        "action": "requested_action",
        "check_run": {"id": 1, "name": "release-guard", "head_sha": SHA_A},
        "requested_action": {"identifier": identifier},
        "repository": {"full_name": "o/r"},
        "sender": {"login": login, "type": user_type},
        "installation": {"id": 1},
    }


def test_the_rescan_button_makes_a_command_job_on_its_commit() -> None:
    (job,) = route("check_run", _button()).jobs
    assert job.kind is JobKind.COMMENT_COMMAND and job.head_sha == SHA_A
    assert job.details["source"] == "check_run" and job.details["command"] == "rescan"
    assert job.details["author"] == "Mona" and job.details["check_run_id"] == 1
    # Presses by one person on one commit fold into one job while it waits or runs.
    assert job.dedupe_key == f"comment_command:o/r:rescan:{SHA_A}:mona"
    (again,) = route("check_run", _button(login="mona")).jobs
    assert again.dedupe_key == job.dedupe_key
    (other,) = route("check_run", _button(login="hubot")).jobs
    assert other.dedupe_key != job.dedupe_key


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (_button(identifier="lgtm"), "is not release-guard's"),
        (_button(login="ci[bot]", user_type="Bot"), "not pressed by a person"),
        (_button(login="renovate[bot]"), "not pressed by a person"),
        ({k: v for k, v in _button().items() if k != "sender"}, "not pressed by a person"),
    ],
)
def test_other_requested_actions_are_ignored(payload: dict[str, Any], why: str) -> None:
    routed = route("check_run", payload)
    assert routed.ignored is not None and why in routed.ignored and not routed.jobs


def test_workflow_run_completed_scans_that_run() -> None:
    payload = {
        "action": "completed",
        "workflow_run": {
            "id": 123,
            "run_attempt": 2,
            "name": "build",
            "head_sha": SHA_A,
            "head_branch": "main",
            "event": "push",
            "conclusion": "success",
            "pull_requests": [{"number": 9}],
        },
        "repository": {"full_name": "o/r"},
        "installation": {"id": 1},
    }
    (job,) = route("workflow_run", payload).jobs
    assert job.kind is JobKind.WORKFLOW_RUN and job.head_sha == SHA_A
    assert job.details["workflow_run_id"] == 123 and job.details["run_attempt"] == 2
    assert job.details["pull_numbers"] == [9]
    assert job.dedupe_key == "workflow_run:o/r:123:2"


def test_release_has_no_head_sha() -> None:
    payload = {
        "action": "published",
        "release": {
            "id": 5,
            "tag_name": "v1.0.0",
            "target_commitish": "main",
            "draft": False,
            "prerelease": False,
        },
        "repository": {"full_name": "o/r"},
        "installation": {"id": 1},
    }
    (job,) = route("release", payload).jobs
    assert job.kind is JobKind.RELEASE and job.head_sha is None
    assert job.details["tag_name"] == "v1.0.0" and job.details["release_id"] == 5
    # created, published and prereleased of one published release are one job...
    for action in ("created", "prereleased"):
        (same,) = route("release", {**payload, "action": action}).jobs
        assert same.dedupe_key == job.dedupe_key == "release:o/r:5:published"
    # ...and publishing a draft is not folded into the draft's job.
    draft = {**payload, "action": "created", "release": {**payload["release"], "draft": True}}
    (drafted,) = route("release", draft).jobs
    assert drafted.dedupe_key == "release:o/r:5:draft"


def _gate(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "action": "requested",
        "environment": "production",
        "event": "push",
        "deployment_callback_url": "https://api.github.com/repos/o/r/actions/runs/1/deployment_protection_rule",
        "deployment": {"id": 8, "sha": SHA_A},
        "repository": {"full_name": "o/r"},
        "installation": {"id": 1},
    }
    payload.update(changes)
    return payload


def test_deployment_protection_rule_makes_a_gate_job() -> None:
    (job,) = route("deployment_protection_rule", _gate()).jobs
    assert job.kind is JobKind.DEPLOYMENT_GATE and job.head_sha == SHA_A
    assert job.details["callback_url"].endswith("/deployment_protection_rule")  # type: ignore[union-attr]
    assert job.details["environment"] == "production" and job.details["deployment_id"] == 8
    (without_deployment,) = route("deployment_protection_rule", _gate(deployment=None)).jobs
    assert without_deployment.head_sha is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"deployment_callback_url": "ftp://x"}, "deployment_callback_url: expected a URL"),
        ({"environment": 5}, "environment: expected a string"),
        ({"deployment": "8"}, "deployment: expected an object"),
    ],
)
def test_bad_gate_payloads_are_malformed(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(MalformedPayload, match=message):
        route("deployment_protection_rule", _gate(**changes))


def _comment(
    body: str, user_type: str = "User", on_pull: bool = True, login: str = "mona"
) -> dict[str, Any]:
    issue: dict[str, Any] = {"number": 12}
    if on_pull:
        issue["pull_request"] = {"url": "https://api.github.com/repos/o/r/pulls/12"}
    return {
        "action": "created",
        "issue": issue,
        "comment": {
            "id": 77,
            "body": body,
            "user": {"login": login, "type": user_type},
            "author_association": "MEMBER",
        },
        "repository": {"full_name": "o/r"},
        "installation": {"id": 1},
    }


def test_a_command_comment_makes_a_comment_job() -> None:
    body = f"{COMMAND_PREFIX} rescan\nplease" + "x" * 5000
    (job,) = route("issue_comment", _comment(body)).jobs
    assert job.kind is JobKind.COMMENT_COMMAND and job.head_sha is None
    assert job.details["command"] == f"{COMMAND_PREFIX} rescan"
    assert job.details["comment_id"] == 77 and job.details["author"] == "mona"
    assert job.details["author_association"] == "MEMBER"
    assert job.details["is_pull_request"] is True and job.details["issue_number"] == 12
    assert len(job.details["body"]) == MAX_COMMENT_CHARS  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (_comment("looks good to me"), "not a command"),
        (_comment(f"> {COMMAND_PREFIX} rescan"), "not a command"),
        (_comment(f"{COMMAND_PREFIX} rescan", user_type="Bot"), "a bot's comment"),
        (_comment(f"{COMMAND_PREFIX} rescan", login="release-guard[bot]"), "a bot's comment"),
        (_comment(f"{COMMAND_PREFIX} rescan", on_pull=False), "not a comment on a pull request"),
    ],
)
def test_other_comments_are_ignored(payload: dict[str, Any], why: str) -> None:
    routed = route("issue_comment", payload)
    assert routed.ignored is not None and why in routed.ignored and not routed.jobs


@pytest.mark.parametrize(
    "body",
    [
        f"{COMMAND_PREFIX}ish rescan",  # maybe the repository's own prefix: the handler decides
        "/guard rescan",
        "@release-guard rescan",
        "  @someone-else look\nat this",
    ],
)
def test_slash_and_mention_lines_reach_the_handler(body: str) -> None:
    (job,) = route("issue_comment", _comment(body)).jobs
    assert job.details["command"] == body.strip().split("\n")[0]
    assert job.details["source"] == "comment" and job.details["author_type"] == "User"


@pytest.mark.parametrize("event", ["ping", "installation", "installation_repositories", "push"])
def test_other_events_are_ignored(event: str) -> None:
    routed = route(event, {"action": "created", "zen": "Keep it logically awesome."})
    assert routed.ignored and not routed.jobs


def test_unrouted_actions_are_ignored_without_validation() -> None:
    routed = route("pull_request", {"action": "closed"})
    assert routed.ignored == "pull_request.closed is not acted on"


def _broken(path: list[str], value: Any) -> dict[str, Any]:
    payload = copy.deepcopy(pull_request_payload())
    target = payload
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return payload


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["pull_request", "head", "sha"], KeyError, "pull_request.head.sha: missing"),
        (
            ["pull_request", "head", "sha"],
            "not-a-sha",
            "pull_request.head.sha: expected a commit SHA",
        ),
        (["pull_request", "head"], [], "pull_request.head: expected an object"),
        (["pull_request", "number"], "7", "pull_request.number: expected an integer"),
        (["pull_request", "number"], True, "pull_request.number: expected an integer"),
        (["installation", "id"], "42", "installation.id: expected an integer"),
        # The stores keep ids in signed 64-bit columns; GitHub's are positive (issue 16).
        (["installation", "id"], 2**63, r"installation.id: expected an integer from 1 to 2\^63-1"),
        (["installation", "id"], 2**64 - 1, r"installation.id: expected an integer from 1"),
        (["installation", "id"], -1, r"installation.id: expected an integer from 1"),
        (["installation", "id"], 0, r"installation.id: expected an integer from 1"),
        (["installation", "id"], 4.2e19, "installation.id: expected an integer"),
        (["pull_request", "number"], 2**63, r"pull_request.number: expected an integer from 1"),
        (["pull_request", "head", "ref"], "a\x00b", "pull_request.head.ref: contains a NUL"),
        (["repository", "full_name"], "no-slash", "repository.full_name: expected owner/name"),
        (["repository"], KeyError, "repository: missing"),
        (["action"], 5, "action: expected a string"),
    ],
)
def test_malformed_payloads_name_the_field(path: list[str], value: Any, message: str) -> None:
    with pytest.raises(MalformedPayload, match=message):
        route("pull_request", _broken(path, value))


def test_a_routed_event_needs_an_action() -> None:
    with pytest.raises(MalformedPayload, match="action: missing"):
        route("check_suite", {"check_suite": {}})


def test_sha256_repositories_are_accepted() -> None:
    (job,) = route("pull_request", pull_request_payload(sha="c" * 64)).jobs
    assert job.head_sha == "c" * 64


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_keys = st.sampled_from(
    [
        "action",
        "installation",
        "repository",
        "pull_request",
        "check_suite",
        "check_run",
        "workflow_run",
        "release",
        "deployment",
        "comment",
        "issue",
        "id",
        "full_name",
        "head",
        "sha",
        "head_sha",
        "number",
        "environment",
        "deployment_callback_url",
    ]
)
_payloads = st.dictionaries(_keys, _json | st.dictionaries(_keys, _json, max_size=5), max_size=8)


@settings(max_examples=300, deadline=None)
@given(
    event=st.sampled_from(
        [
            "pull_request",
            "check_suite",
            "check_run",
            "workflow_run",
            "release",
            "deployment_protection_rule",
            "issue_comment",
            "ping",
        ]
    ),
    payload=_payloads,
    action=st.sampled_from(
        ["opened", "requested", "rerequested", "completed", "published", "created", "synchronize"]
    ),
)
def test_routing_never_fails_other_than_malformed(
    event: str, payload: dict[str, Any], action: str
) -> None:
    payload.setdefault("action", action)
    try:
        routed = route(event, payload)
    except MalformedPayload:
        return
    for job in routed.jobs:
        assert job.installation_id and "/" in job.repository
        assert 1 <= job.installation_id <= MAX_ID
        for value in job.details.values():
            assert not isinstance(value, int) or -MAX_ID - 1 <= value <= MAX_ID
            assert not isinstance(value, str) or "\x00" not in value


def test_a_workflow_run_attempt_out_of_range_is_malformed() -> None:
    payload = next(e.payload for e in examples() if e.event == "workflow_run")
    payload = copy.deepcopy(payload)
    payload["action"] = "completed"
    payload.setdefault("installation", {"id": 1})
    payload["workflow_run"]["run_attempt"] = 2**63
    with pytest.raises(MalformedPayload, match=r"workflow_run\.run_attempt: expected an integer"):
        route("workflow_run", payload)


def test_a_nul_in_any_stored_text_is_malformed() -> None:
    """What the models pass on unread (the Rescan button's sender) is checked before storing."""
    payload = next(
        e.payload
        for e in examples()
        if e.event == "check_run" and e.payload.get("action") == "requested_action"
    )
    payload = copy.deepcopy(payload)
    payload.setdefault("installation", {"id": 1})
    payload["requested_action"] = {"identifier": "rescan"}
    payload["sender"] = {"login": "octo\x00cat", "type": "User"}
    with pytest.raises(MalformedPayload, match="author: contains a NUL character"):
        route("check_run", payload)
