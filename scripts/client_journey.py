"""An integrator's first journey through a client generated from openapi/openapi.json.

Run by scripts/client-journey: python client_journey.py SPEC CLIENT_DIR BASE_URL EMAIL PASSWORD.
Every response the journey gets is checked against the document: its status and content
type must be documented for the operation, and a JSON body must validate against the
response's schema (JSON Schema 2020-12, as OpenAPI 3.1 says).
"""

import io
import json
import re
import sys
import time

SPEC_PATH, CLIENT_DIR, BASE, EMAIL, PASSWORD = sys.argv[1:6]
sys.path.insert(0, CLIENT_DIR)

import httpx  # noqa: E402  (installed with the generator)
import jsonschema  # noqa: E402

from consento_client import AuthenticatedClient, Client  # noqa: E402
from consento_client.api.auth import issue_token  # noqa: E402
from consento_client.api.contacts import create_contact, list_contacts, update_contact  # noqa: E402
from consento_client.api.forms import create_form  # noqa: E402
from consento_client.api.imports import create_import, get_import, upload_import  # noqa: E402
from consento_client.api.lists import create_list  # noqa: E402
from consento_client.api.plugins import dry_run  # noqa: E402
from consento_client.api.public import answer_survey, submit_form  # noqa: E402
from consento_client.api.surveys import create_survey  # noqa: E402
from consento_client.models import (  # noqa: E402
    AnswerRequest,
    ContactPage,
    ContactPatch,
    ContactRequest,
    ContactResponse,
    DryRunRequest,
    DryRunResponse,
    DryRunResult,
    FormBody,
    FormResponse,
    ImportRequest,
    ImportResponse,
    ListRequest,
    ListResponse,
    Problem,
    SignupRequest,
    SignupResponse,
    SurveyRequest,
    SurveyResponse,
    SurveyStateResponse,
    TokenRequest,
    TokenResponse,
)
from consento_client.types import File  # noqa: E402

with open(SPEC_PATH, encoding="utf-8") as f:
    SPEC = json.load(f)

# Each documented path as a pattern, the most literal first (`/imports/{id}/file` before a
# template that would also match).
ROUTES = sorted(
    (
        (re.compile("^" + re.sub(r"\\\{[^/]+\\\}", "[^/]+", re.escape(path)) + "$"), path)
        for path in SPEC["paths"]
    ),
    key=lambda route: route[1].count("{"),
)

checked = []


def pointer(*parts):
    return "#/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def check_response(response: httpx.Response) -> None:
    """Fails the journey when a response is not what the document says."""
    response.read()
    request = response.request
    method = request.method.lower()
    path = request.url.path
    template = next((t for pattern, t in ROUTES if pattern.match(path)), None)
    where = f"{request.method} {path} -> {response.status_code}"
    assert template is not None, f"{where}: no documented path"
    operation = SPEC["paths"][template].get(method)
    assert operation is not None, f"{where}: {method} is not documented on {template}"
    status = str(response.status_code)
    assert status in operation["responses"], f"{where}: status {status} is not documented"
    documented = operation["responses"][status].get("content", {})
    content_type = response.headers.get("content-type", "").split(";")[0].strip()
    if not documented:
        assert not response.content, f"{where}: a body where the document says none"
        checked.append(where)
        return
    assert content_type in documented, f"{where}: {content_type} is not documented ({list(documented)})"
    if content_type.endswith("json"):
        # The document itself is the root schema, so that its $refs resolve; unknown
        # keywords (openapi, paths…) are ignored by JSON Schema.
        root = dict(SPEC)
        root["$ref"] = pointer("paths", template, method, "responses", status, "content", content_type, "schema")
        root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        validator = jsonschema.Draft202012Validator(root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        errors = sorted(validator.iter_errors(response.json()), key=lambda e: list(e.path))
        assert not errors, f"{where}: the body does not hold to its schema: " + "; ".join(
            f"{'/'.join(map(str, e.path)) or 'body'}: {e.message}" for e in errors[:5]
        )
    checked.append(where)


HTTPX = {"event_hooks": {"response": [check_response]}}


def step(name):
    print(f"  {name}", flush=True)


def main() -> None:
    public = Client(base_url=BASE, raise_on_unexpected_status=True, httpx_args=HTTPX)

    step("sign in with a wrong password: a typed 401 problem")
    wrong = issue_token.sync_detailed(client=public, body=TokenRequest(email=EMAIL, password="not the password"))
    assert wrong.status_code == 401 and isinstance(wrong.parsed, Problem), wrong
    assert wrong.parsed.status == 401, wrong.parsed

    step("sign in")
    signed = issue_token.sync_detailed(client=public, body=TokenRequest(email=EMAIL, password=PASSWORD))
    assert isinstance(signed.parsed, TokenResponse), signed
    api = AuthenticatedClient(
        base_url=BASE, token=signed.parsed.access_token, raise_on_unexpected_status=True, httpx_args=HTTPX
    )

    step("list the contacts of an empty server")
    page = list_contacts.sync(client=api)
    assert isinstance(page, ContactPage) and page.items == [] and page.next_cursor is None, page

    step("create contacts, one with attributes and one without")
    news = create_list.sync(client=api, body=ListRequest.from_dict({"name": "Newsletter", "opt_in": "single"}))
    assert isinstance(news, ListResponse), news
    marie = create_contact.sync(
        client=api,
        body=ContactRequest.from_dict(
            {"email": "Marie.Curie@Example.org", "attributes": {"first_name": "Marie", "prizes": 2}, "tags": ["physics"]}
        ),
    )
    assert isinstance(marie, ContactResponse), marie
    assert marie.email == "Marie.Curie@example.org" and marie.attributes.to_dict() == {"first_name": "Marie", "prizes": 2}
    bare = create_contact.sync(client=api, body=ContactRequest.from_dict({"email": "pierre@example.org"}))
    assert isinstance(bare, ContactResponse) and bare.attributes.to_dict() == {}, bare

    step("page through the contacts one at a time")
    first = list_contacts.sync(client=api, limit=1)
    assert isinstance(first, ContactPage) and len(first.items) == 1 and first.next_cursor, first
    second = list_contacts.sync(client=api, limit=1, cursor=first.next_cursor)
    assert isinstance(second, ContactPage) and len(second.items) == 1, second
    assert {first.items[0].id, second.items[0].id} == {marie.id, bare.id}

    step("patch a contact: attributes merged, tags replaced")
    patched = update_contact.sync(
        marie.id,
        client=api,
        body=ContactPatch.from_dict({"attributes": {"prizes": None, "field": "chemistry"}, "tags": ["nobel"]}),
    )
    assert isinstance(patched, ContactResponse), patched
    assert patched.attributes.to_dict() == {"first_name": "Marie", "field": "chemistry"}, patched.attributes
    assert patched.tags == ["nobel"], patched.tags
    refused = update_contact.sync_detailed(marie.id, client=api, body=ContactPatch.from_dict({"tags": "nobel"}))
    assert refused.status_code == 422 and isinstance(refused.parsed, Problem), refused

    step("import a CSV file, uploaded as a binary body")
    job = create_import.sync(
        client=api,
        body=ImportRequest.from_dict(
            {"format": "csv", "lists": [str(news.id)], "basis": "single_opt_in", "consent_text": "Yes to the news"}
        ),
    )
    assert isinstance(job, ImportResponse), job
    csv = b"email,first_name\nada@example.org,Ada\ngrace@example.org,Grace\n"
    uploaded = upload_import.sync(job.id, client=api, body=File(payload=io.BytesIO(csv), mime_type="text/csv"))
    assert isinstance(uploaded, ImportResponse), uploaded
    deadline = time.time() + 60
    while True:
        job = get_import.sync(job.id, client=api)
        assert isinstance(job, ImportResponse), job
        if job.status in ("finished", "failed"):
            break
        assert time.time() < deadline, f"the import is still {job.status}"
        time.sleep(0.2)
    assert job.status == "finished" and job.report.imported == 2, job.to_dict()

    step("dry-run a hook: its result is any JSON value")
    for source, args, expected in [
        ('fn matches(contact) { contact.country == "FR" }', [{"country": "FR"}], True),
        ("fn label(n) { `n=${n}` }", [3], "n=3"),
        ("fn pair(a, b) { #{sum: a + b, list: [a, b]} }", [1, 2], {"sum": 3, "list": [1, 2]}),
    ]:
        hook = source.split("(")[0].removeprefix("fn ")
        ran = dry_run.sync(client=api, body=DryRunRequest.from_dict({"source": source, "hook": hook, "args": args}))
        assert isinstance(ran, DryRunResponse) and isinstance(ran.results[0], DryRunResult), ran
        result = ran.results[0].result
        assert result == expected, (source, result)

    step("a survey after a signup, answered as JSON")
    survey = create_survey.sync(
        client=api,
        body=SurveyRequest.from_dict(
            {
                "name": "Pets",
                "title": "A little about you",
                "questions": [
                    {"id": "pets", "text": "Which pets?", "type": "single_choice", "required": True,
                     "options": ["cats", "dogs"]},
                    {"id": "count", "text": "How many?", "type": "number"},
                ],
            }
        ),
    )
    assert isinstance(survey, SurveyResponse), survey
    form = create_form.sync(
        client=api,
        body=FormBody.from_dict(
            {
                "slug": "pets",
                "name": "Pets",
                "title": "Our pet news",
                "opt_in": "single",
                "survey_id": str(survey.id),
                "consents": [{"list_id": str(news.id), "text": "Send me the pet news."}],
            }
        ),
    )
    assert isinstance(form, FormResponse), form
    signup = submit_form.sync(
        "pets", client=public, body=SignupRequest.from_dict({"email": "zoe@example.org", "consents": [str(news.id)]})
    )
    assert isinstance(signup, SignupResponse) and signup.status == "subscribed" and signup.survey_url, signup
    token = signup.survey_url.rstrip("/").rsplit("/", 1)[1]
    wrong = answer_survey.sync_detailed(
        token, client=public, body=AnswerRequest.from_dict({"question_id": "pets", "answer": ["a", "list"]})
    )
    assert wrong.status_code == 422 and isinstance(wrong.parsed, Problem), wrong
    state = answer_survey.sync(token, client=public, body=AnswerRequest.from_dict({"question_id": "pets", "answer": "cats"}))
    assert isinstance(state, SurveyStateResponse) and state.question and state.question.id == "count", state
    state = answer_survey.sync(token, client=public, body=AnswerRequest.from_dict({"question_id": "count", "answer": 2}))
    assert isinstance(state, SurveyStateResponse) and state.completed, state
    assert state.answers.to_dict() == {"pets": "cats", "count": 2}, state.answers

    print(f"the journey passed: {len(checked)} responses, each as the document says", flush=True)


if __name__ == "__main__":
    try:
        main()
    except AssertionError as error:
        print(f"client journey failed: {error}", file=sys.stderr)
        sys.exit(1)
