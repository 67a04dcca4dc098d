import pytest

from identities import InvalidIdentity, normalize


@pytest.mark.parametrize(
    ("identity_type", "raw", "expected"),
    [
        ("email", "  Jane.Doe@Example.COM ", "jane.doe@example.com"),
        ("android_aaid", "38400000-8CF0-11BD-B23E-10B96E40000D", "38400000-8cf0-11bd-b23e-10b96e40000d"),
        ("ios_idfa", "{EA7583CD-A667-48BC-B806-42ECB2B48606}", "ea7583cd-a667-48bc-b806-42ecb2b48606"),
        ("mobile_number", "+44 20 7946 0958", "+442079460958"),
        ("mobile_number", "0044 20 7946 0958", "+442079460958"),
        ("mobile_number", "(415) 555-0132", "+14155550132"),
        ("customer_id", " CUST-42 ", "CUST-42"),
    ],
)
def test_it_normalizes_values(identity_type, raw, expected):
    assert normalize(identity_type, raw) == expected


@pytest.mark.parametrize(
    ("identity_type", "raw", "message"),
    [
        ("email", "jane.doe", "'jane.doe' is not a valid email address"),
        ("email", "a b@example.com", "'a b@example.com' is not a valid email address"),
        ("android_aaid", "not-a-uuid", "'not-a-uuid' is not a device ID (expected a UUID)"),
        ("mobile_number", "call me", "'call me' is not a phone number"),
        ("customer_id", "   ", "must not be empty"),
        ("customer_id", "abc\x00def", "must not contain control characters"),
        (
            "emial",
            "x@example.com",
            "unknown identity type 'emial'; expected one of email, customer_id, "
            "mobile_number, ios_idfa, ios_idfv, android_aaid, android_uuid, facebook_id, google_id, "
            "microsoft_id, other",
        ),
    ],
)
def test_it_rejects_bad_values_with_a_reason(identity_type, raw, message):
    with pytest.raises(InvalidIdentity) as error:
        normalize(identity_type, raw)
    assert str(error.value) == message
