"""Redaction by parsing, tested over generated passwords and user names from the whole printable range (whitespace,
`@`, `:`, `/`, `?` included) in each URL form fatnas takes: user-info (SQLAlchemy server URLs, a raw `@` in the
user name as hosted PostgreSQL services want it), `?password=`, `&pass=`, libpq's `options=...password%3D...`.
"""
from __future__ import annotations

import shlex
import string
from urllib.parse import quote

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fatnas.errors import MASK, redact, redact_url
from fatnas.runs.store import command_line

PRINTABLE = st.text(alphabet=string.printable, min_size=1, max_size=24)
EXAMPLES = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


def user_part(user: str) -> str:
    """A user name as a URL holds it: raw, but `:` and `/` (which would end it) percent-encoded."""
    return user.replace(":", "%3A").replace("/", "%2F")


def no_secret_key(text: str) -> bool:
    """Whether `text` could not itself read as a secret-named `key=` (then only the password should be masked)."""
    return "=" not in text and "%3d" not in text.lower()


@EXAMPLES
@given(user=PRINTABLE, password=PRINTABLE, scheme=st.sampled_from(["postgresql", "postgresql+psycopg", "mysql"]))
def test_a_user_info_password_is_masked_whatever_it_holds(user, password, scheme):
    assume(no_secret_key(user))
    url = f"{scheme}://{user_part(user)}:{password}@127.0.0.1:5432/nas"
    expected = f"{scheme}://{user_part(user)}:{MASK}@127.0.0.1:5432/nas"
    assert redact_url(url) == expected
    assert redact(f"error: --storage {url}: refused") == f"error: --storage {expected}: refused"
    assert redact(redact_url(url)) == expected  # idempotent


@EXAMPLES
@given(user=PRINTABLE, password=PRINTABLE, key=st.sampled_from(["password", "pass", "sslpassword", "PASSWORD"]))
def test_a_query_password_is_masked_whatever_it_holds(user, password, key):
    assume(no_secret_key(user) and not set("&;") & set(password))
    url = f"postgresql://{user_part(user)}@db/nas?sslmode=require&{key}={password}"
    expected = f"postgresql://{user_part(user)}@db/nas?sslmode=require&{key}={MASK}"
    assert redact_url(url) == expected
    if not set(string.whitespace + "'\"") & set(password):  # free text ends a value at a space or quote
        assert redact(f"error: {url} refused") == f"error: {expected} refused"


@EXAMPLES
@given(password=PRINTABLE)
def test_a_password_in_libpq_options_is_masked(password):
    url = f"postgresql://ann@db/nas?options=-c%20password%3D{quote(password, safe='')}&sslmode=require"
    assert redact_url(url) == f"postgresql://ann@db/nas?options=-c%20password%3D{MASK}&sslmode=require"
    assert redact(f"error: {url}") == f"error: {redact_url(url)}"


@EXAMPLES
@given(user=PRINTABLE, password=PRINTABLE)
def test_a_recorded_command_line_holds_no_password(user, password):
    assume(no_secret_key(user))
    url = f"postgresql://{user_part(user)}:{password}@db/nas"
    for argv in (["--storage", url], [f"--storage={url}"]):
        words = shlex.split(command_line(["cli.py", "search", *argv, "--trials", "2"]))
        assert words[-2:] == ["--trials", "2"]
        assert " ".join(words[2:-2]).endswith(f"postgresql://{user_part(user)}:{MASK}@db/nas")


# passwords from the whole printable range, with the characters that end URL parts weighted up
URL_HEAVY = st.text(alphabet=st.one_of(st.sampled_from("?#/@:"), st.sampled_from(string.printable)), min_size=1,
                    max_size=24)


@EXAMPLES
@given(user=PRINTABLE, password=URL_HEAVY, tail=st.sampled_from(["/nas", ":5432/nas", "/nas?sslmode=require", ""]))
def test_a_password_with_url_delimiters_is_masked_to_the_last_at(user, password, tail):
    assume(no_secret_key(user) and no_secret_key(password))
    url = f"postgresql://{user_part(user)}:{password}@db.example{tail}"
    assert redact_url(url) == f"postgresql://{user_part(user)}:{MASK}@db.example{tail}"


def test_the_issue_cases_show_no_part_of_the_password():
    assert redact_url("postgresql://u@x:aa?bbQz12@host/db") == f"postgresql://u@x:{MASK}@host/db"
    assert redact_url("postgresql://bob@corp:B0b p@ss:/?#x&Uq88@host:5432/db") == \
        f"postgresql://bob@corp:{MASK}@host:5432/db"
    assert redact_url("postgresql://u:pw@host/db?api_key=SECRET&x=1") == \
        f"postgresql://u:{MASK}@host/db?api_key={MASK}&x=1"
