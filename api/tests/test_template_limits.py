"""Customer templates cannot burn the API's CPU or memory: every render has a step and
size budget (api.services.templating) and runs off the event loop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi.testclient import TestClient
from jinja2.sandbox import ImmutableSandboxedEnvironment

import api.services.sending as sending
from api.errors import ApiError
from api.services import templating
from api.services.templating import MAX_STEPS, TemplateTooExpensive, render_template
from api.tests.conftest import SendingTeam
from testing.submissions import submission_count

NESTED_LOOP = "{% for i in range(99999) %}{% for j in range(99999) %}.{% endfor %}{% endfor %}"

# Each of these would take seconds to minutes of CPU or gigabytes of memory unchecked.
ATTACKS = [
    NESTED_LOOP,
    "{% for a in items %}{% for b in items %}{% endfor %}{% endfor %}",
    "{{ 'x' * 10**9 }}",
    "{% for i in range(10) %}{{ 'x' * 1000000 }}{% endfor %}",
    "{{ 'x'|center(1000000000) }}",
    "{{ 'x'.ljust(1000000000) }}",
    "{{ 'x'['rjust'](1000000000) }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ '%999999999d' % 1 }}",
    "{{ '%*d' % (999999999, 1) }}",
    "{{ ('x' * 1000000)|replace('x', 'yyyyyyyyyy') }}",
    "{{ ('x' * 1000000).replace('x', 'yyyyyyyyyy') }}",
    "{{ 'ab'|indent(999999999) }}",
    "{{ 7 ** 999999999 }}",
    "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}",
    "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
    "{% endfor %}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "{{ lipsum(99999) }}",
    "{% for x in range(3) recursive %}{{ loop(range(99999)) }}{% endfor %}",
]


def _refusal(source: str, variables: dict[str, Any] | None = None) -> ApiError:
    with pytest.raises(ApiError) as caught:
        render_template(source, variables or {"items": list(range(50_000))}, html=True)
    return caught.value


def test_a_nested_loop_is_stopped_by_the_step_budget() -> None:
    error = _refusal(NESTED_LOOP)
    assert error.status == 422 and error.code == "template_too_expensive"
    assert f"more than {MAX_STEPS} steps" in error.message
    cause = error.__cause__
    assert isinstance(cause, TemplateTooExpensive)
    # The counter stopped it right at the limit, not a timeout or the end of the loop.
    assert MAX_STEPS < cause.steps <= MAX_STEPS + 100_000


def test_the_budget_is_per_render_not_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(templating, "MAX_STEPS", 100)
    source = "{% for i in range(30) %}{{ i }}{% endfor %}"
    for _ in range(5):  # 5 x ~60 steps (range, loop), each render within its own 100
        assert render_template(source, {}).startswith("0123")
    assert _refusal("{% for i in range(60) %}{{ i }}{% endfor %}").code == (
        "template_too_expensive"
    )


@pytest.mark.parametrize("source", ATTACKS)
def test_expensive_templates_get_422(source: str) -> None:
    error = _refusal(source)
    assert (error.status, error.code) == (422, "template_too_expensive"), error.message
    assert error.details == [
        {
            "path": "template",
            "message": f"limits: {MAX_STEPS} steps, {templating.MAX_OUTPUT_CHARS} characters",
        }
    ]


NORMAL = [
    ("Hi {{ first_name|default('there') }}!", {"first_name": "Ana"}),
    ("{% for p in products %}<li>{{ p.name }}: {{ '%.2f' % p.price }}</li>{% endfor %}", None),
    ("{{ 'a' ~ b ~ 'c' }} {{ 2 ** 10 }} {{ [1, 2] * 2 }} {{ 'x' * 3 }}", {"b": "<b>"}),
    ("{{ '{:>6}'.format(n) }}|{{ 'x'|center(7) }}|{{ 'ab'|replace('a', 'zz') }}", {"n": 42}),
    ("{% for i in range(3) %}{{ loop.index }}{% endfor %} {{ items|join(', ') }}", None),
    ("{% macro b(x) %}[{{ x }}]{% endmacro %}{{ b(1) }}{{ b('<i>') }}", None),
]


@pytest.mark.parametrize(("source", "variables"), NORMAL)
@pytest.mark.parametrize("html", [False, True])
def test_normal_templates_render_exactly_as_before(
    source: str, variables: dict[str, Any] | None, html: bool
) -> None:
    variables = variables or {
        "products": [{"name": "Tea <green>", "price": 3.5}, {"name": "Cup", "price": 12}],
        "items": ["a", "b"],
    }
    plain = ImmutableSandboxedEnvironment(autoescape=html).from_string(source)
    assert render_template(source, variables, html=html) == plain.render(**variables)


def test_sandbox_and_syntax_errors_keep_their_answers() -> None:
    assert _refusal("{{ ''.__class__.__mro__ }}", {}).code == "template_error"
    assert _refusal("{{ missing_variable }}", {}).code == "template_error"


@pytest.mark.integration
def test_preview_and_send_refuse_an_expensive_template_and_queue_nothing(
    client: TestClient,
    team: SendingTeam,
    redis_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = f"/v1/teams/{team.team_id}/templates"
    body = {"name": "bomb", "subject": "Hi {{ name }}", "html": NESTED_LOOP, "text": ""}
    made = client.post(base, json=body, headers=team.auth)
    assert made.status_code == 201  # valid syntax; the cost shows only when rendered
    preview = client.post(
        f"{base}/{made.json()['id']}/preview",
        json={"variables": {"name": "Ana"}},
        headers=team.auth,
    )
    assert preview.status_code == 422
    assert preview.json()["error"]["code"] == "template_too_expensive"

    threads: list[bool] = []
    real = sending.render_parts

    def on_the_event_loop_thread(*args: Any) -> Any:
        try:
            asyncio.get_running_loop()
            threads.append(True)
        except RuntimeError:
            threads.append(False)
        return real(*args)

    monkeypatch.setattr(sending, "render_parts", on_the_event_loop_thread)
    email = {
        "from": f"news@{team.domain}",
        "to": ["ana@example.org"],
        "template_id": made.json()["id"],
        "variables": {"name": "Ana"},
    }
    refused = client.post("/v1/emails", json=email, headers=team.auth)
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "template_too_expensive"
    assert threads and not any(threads)  # rendered in a worker thread, never on the loop

    fine = {"name": "ok", "subject": "Hi {{ name }}", "html": "<p>{{ name }}</p>"}
    good = client.post(base, json=fine, headers=team.auth).json()["id"]
    sent = client.post("/v1/emails", json={**email, "template_id": good}, headers=team.auth)
    assert sent.status_code == 200, sent.text
    assert submission_count(redis_client) == 1  # only the good one was queued
