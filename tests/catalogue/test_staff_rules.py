"""The staff directory's pure rules: password policy, lockout, role scoping, audit entries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from hypothesis import given
from hypothesis import strategies as st

from services.catalogue.staff_rules import (
    LOCKOUT_DURATION,
    LOCKOUT_FAILURES,
    LOCKOUT_WINDOW,
    Lockout,
    Role,
    StaffAccount,
    action_problems,
    after_failure,
    after_success,
    detail_problems,
    email_problems,
    is_locked,
    may_act_on,
    may_read_audit,
    normalise_email,
    password_problems,
    role_problems,
    subject_problems,
)

T0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


def account(role: Role = Role.NODE, *, disabled: bool = False) -> StaffAccount:
    return StaffAccount(
        account_id=uuid4(),
        email="a@example.de",
        role=role,
        node_id=uuid4() if role is Role.NODE else None,
        created_at=T0,
        disabled_at=T0 if disabled else None,
    )


# --- passwords and addresses -----------------------------------------------------------------------


def test_password_policy_messages_are_german() -> None:
    assert password_problems("richtig-lang-genug") == []
    assert "mindestens 12" in password_problems("kurz")[0].message
    assert "höchstens 256" in password_problems("x" * 200 + "y" * 57)[0].message
    assert "einzigen" in password_problems("a" * 20)[0].message
    assert password_problems("ä" * 11 + "ö") == []  # characters, not bytes: 12 umlauts are enough


@given(st.text(min_size=12, max_size=256).filter(lambda t: len(set(t)) > 1))
def test_every_long_enough_varied_password_is_accepted(password: str) -> None:
    assert password_problems(password) == []


@given(st.text(max_size=11))
def test_every_short_password_is_refused(password: str) -> None:
    problems = password_problems(password)
    assert [p.field for p in problems] == ["password"]


@given(st.characters(), st.integers(min_value=1, max_value=300))
def test_one_repeated_character_is_never_a_password(char: str, count: int) -> None:
    assert password_problems(char * count) != []


def test_addresses_are_normalised_and_checked() -> None:
    assert normalise_email("  Anna.Schmidt@Example.DE ") == "anna.schmidt@example.de"
    assert email_problems("anna@example.de") == []
    for bad in ("", "anna", "anna@", "an na@example.de", "anna@example.de\n", "a" * 250 + "@x.de"):
        assert [p.field for p in email_problems(bad)] == ["email"], bad


def test_roles_and_nodes_go_together() -> None:
    assert role_problems(Role.LEAD, None) == []
    assert role_problems(Role.NODE, uuid4()) == []
    assert role_problems(Role.NODE, None)[0].field == "node_id"
    assert role_problems(Role.LEAD, uuid4())[0].field == "node_id"


# --- lockout ---------------------------------------------------------------------------------------


def fail(times: int, start: datetime = T0, step: timedelta = timedelta(minutes=1)) -> Lockout:
    state = Lockout()
    for index in range(times):
        state = after_failure(state, start + index * step)
    return state


def test_five_failures_within_the_window_lock_for_fifteen_minutes() -> None:
    four = fail(LOCKOUT_FAILURES - 1)
    assert four.failed_attempts == 4 and not is_locked(four, T0 + timedelta(minutes=4))
    five = fail(LOCKOUT_FAILURES)
    fifth_at = T0 + timedelta(minutes=4)
    assert five.locked_until == fifth_at + LOCKOUT_DURATION
    assert is_locked(five, fifth_at + LOCKOUT_DURATION - timedelta(seconds=1))
    assert not is_locked(five, fifth_at + LOCKOUT_DURATION)


def test_failures_spread_over_more_than_the_window_never_lock() -> None:
    state = fail(20, step=LOCKOUT_WINDOW / 4 + timedelta(seconds=1))
    assert state.locked_until is None


def test_tries_while_locked_do_not_extend_the_lock() -> None:
    locked = fail(LOCKOUT_FAILURES)
    assert after_failure(locked, T0 + timedelta(minutes=10)) == locked


def test_success_forgets_everything() -> None:
    assert after_success() == Lockout()
    assert fail(after_success().failed_attempts + 3).failed_attempts == 3


@given(
    st.lists(st.integers(min_value=0, max_value=3600), max_size=40),
)
def test_lockout_is_never_longer_than_its_duration(gaps: list[int]) -> None:
    state, now = Lockout(), T0
    for gap in gaps:
        now += timedelta(seconds=gap)
        state = after_failure(state, now)
        assert state.failed_attempts < LOCKOUT_FAILURES
        if state.locked_until is not None:
            assert now < state.locked_until <= now + LOCKOUT_DURATION
    assert not is_locked(state, now + LOCKOUT_DURATION)


# --- scoping -------------------------------------------------------------------------------------


def test_node_staff_act_on_their_own_node_only() -> None:
    staff = account(Role.NODE)
    assert may_act_on(staff, staff.node_id)
    assert may_act_on(staff, None)
    assert not may_act_on(staff, uuid4())
    assert not may_read_audit(staff)


def test_the_lead_acts_everywhere_and_disabled_accounts_nowhere() -> None:
    lead = account(Role.LEAD)
    assert may_act_on(lead, uuid4()) and may_read_audit(lead)
    for disabled in (account(Role.LEAD, disabled=True), account(Role.NODE, disabled=True)):
        assert not may_act_on(disabled, disabled.node_id)
        assert not may_read_audit(disabled)


# --- audit entries -------------------------------------------------------------------------------


def test_only_the_closed_list_of_console_actions() -> None:
    assert action_problems("offering.published") == []
    assert action_problems("attendance.changed") == []
    for bad in ("staff.signed_in", "offering.deleted", "", "x" * 60):
        assert action_problems(bad)[0].field == "action"


def test_detail_is_small_and_flat() -> None:
    assert detail_problems({"reason": "Krankheit", "count": 3, "over_capacity": True, "note": None}) == []
    assert detail_problems({"nested": {"a": 1}})[0].field == "detail.nested"
    assert detail_problems({"list": [1, 2]})[0].field == "detail.list"
    assert detail_problems({"ratio": 0.5})[0].field == "detail.ratio"
    assert detail_problems({"Bad-Key": 1})[0].field == "detail"
    assert detail_problems({"text": "x" * 201})[0].field == "detail.text"
    assert detail_problems({"text": "a\x00b"})[0].field == "detail.text"
    assert detail_problems({"text": "a\ud800b"})[0].field == "detail.text"
    assert detail_problems({"key\n": 1})[0].field == "detail"
    assert detail_problems({"\ud800": 1})[0].field == "detail"
    assert detail_problems({"big": 2**60})[0].field == "detail.big"
    assert detail_problems({f"k{i}": 1 for i in range(21)})[0].field == "detail"
    assert "2000" in detail_problems({f"k{i}": "ü" * 200 for i in range(15)})[0].message.replace(".", "")


def test_subject_is_one_short_line() -> None:
    assert subject_problems(None) == subject_problems("reg-123") == []
    assert subject_problems("a\nb")[0].field == "subject"
    assert subject_problems("a\ud800")[0].field == "subject"
    assert subject_problems("x" * 201)[0].field == "subject"


def test_a_failure_read_before_the_first_one_still_counts() -> None:
    """Concurrent sign-ins read the clock before the row lock: the earlier reading may come second."""
    start = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    lockout = Lockout()
    for offset in (5, 1, 4, 2, 3):  # seconds, in the order the row lock lets them in
        lockout = after_failure(lockout, start + timedelta(seconds=offset))
    assert lockout.locked_until is not None
