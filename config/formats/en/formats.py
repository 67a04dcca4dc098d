# How every page writes a date and a moment (Django's own list columns and `staff.dates` alike): day first,
# 24-hour clock with seconds, so a delivery can be matched to the partner's logs and nothing reads as US-only.
# https://docs.djangoproject.com/en/5.2/topics/i18n/formatting/#creating-custom-format-files
DATE_FORMAT = "j M Y"
DATETIME_FORMAT = "j M Y, H:i:s"
SHORT_DATETIME_FORMAT = "j M Y, H:i"
