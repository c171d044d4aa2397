"""What the console's offering page makes of notification's and reporting's answers (pure functions), and
that a service being away costs only its section of the page."""

from __future__ import annotations

from frontends.portal.console.followup_view import certificate_rows, followup_view, rating_view
from frontends.portal.console.staff_api import StaffApi


def test_scores_are_shown_only_where_reporting_shows_them() -> None:
    published = {
        "offering": [
            {"group": "o1", "suppressed": True, "answers": "<5", "marker": "<5"},
            {"group": "o2", "suppressed": True, "answers": 7, "marker": "gesperrt"},
            {"group": "o3", "suppressed": False, "answers": 6, "rating": 4.5, "usefulness": 3.0,
             "would_recommend_share": 0.833},
        ]
    }  # fmt: skip
    assert rating_view(published, "o1") == {"suppressed": True, "text": "weniger als 5 Antworten"}
    withheld = rating_view(published, "o2")
    assert withheld is not None and withheld["suppressed"] and "zurückgehalten" in withheld["text"]
    assert rating_view(published, "o3") == {
        "suppressed": False, "answers": 6, "rating": "4,5", "usefulness": "3,0", "recommend": "83 %",
    }  # fmt: skip
    assert rating_view(published, "nobody") is None
    assert rating_view({}, "o1") is None


def test_certificate_rows_name_the_person_and_the_state() -> None:
    certificates = [
        {"code": "AAAA-BBBB-CCCC-DDDD", "registration_id": "r1", "attended_units": 8, "total_units": 10,
         "issued_at": "2027-03-01T10:00:00+00:00", "revoked_at": None, "revoked_reason": None},
        {"code": "EEEE-FFFF-GGGG-HHHH", "registration_id": "gone", "attended_units": 10, "total_units": 10,
         "issued_at": "2027-03-01T10:00:00+00:00", "revoked_at": "2027-03-02T23:30:00+00:00",
         "revoked_reason": "Irrtum"},
    ]  # fmt: skip
    valid, revoked = certificate_rows(certificates, {"r1": "Ümit Çelik"})
    assert valid["name"] == "Ümit Çelik" and valid["state"] == "gültig" and valid["units"] == "8 von 10 UE"
    assert valid["issued"] == "01.03.2027" and not valid["revoked"]
    assert revoked["name"] == "" and revoked["revoked"] and revoked["reason"] == "Irrtum"
    assert revoked["state"] == "widerrufen am 03.03.2027"  # local (Berlin) day


async def test_an_unreachable_service_costs_only_its_section() -> None:
    closed = "http://127.0.0.1:9"  # discard port: nothing listens
    api = StaffApi.connect(
        {"catalogue": closed, "registration": closed, "notification": closed, "reporting": closed}, "t"
    )
    try:
        view = await followup_view(api, {"offering_id": "o1", "node_id": "n1"}, [])
    finally:
        await api.close()
    assert view["unavailable"] == ["certificates", "feedback"]
    assert view["certificates"] == [] and view["rating"] is None and view["comments"] == []
