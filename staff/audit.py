"""Who changed an output or a connection, and when: one entry in the admin's own log per change.

The admin logs its form saves itself; everything else that changes an output or a
connection (the API, the operation buttons, credential checks) calls `record`, so an
object's History page tells the whole story. Messages name what changed, never a
secret's value: callers pass names (`changed_fields`) and sentences, not values.
"""

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType

FLAGS = {"add": ADDITION, "change": CHANGE, "delete": DELETION}


def record(user, obj, message: str, action: str = "change", object_id=None) -> LogEntry | None:
    """Log `message` about `obj` as done by `user` (a request's user: staff or an API token's user).

    After `obj` was deleted its pk is None: pass the `object_id` it had. Callers without a user (a task, a
    command) are not logged here: there is nobody to name.
    """
    if user is None or not getattr(user, "pk", None):
        return None
    return LogEntry.objects.create(
        user_id=user.pk,
        content_type=ContentType.objects.get_for_model(obj, for_concrete_model=False),
        object_id=str(object_id if object_id is not None else obj.pk),
        object_repr=str(obj)[:200],
        action_flag=FLAGS[action],
        change_message=message,
    )


def changed_fields(before: dict, after: dict) -> list[str]:
    """Names whose values differ between two snapshots, in the order of `after` (values are never returned)."""
    return [name for name in {**before, **after} if before.get(name) != after.get(name)]


def sentence(names: list[str]) -> str:
    """ "Changed name, email_type and api_key." """
    if not names:
        return "Saved with no changes."
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"Changed {listed}."


def moved(name: str, old: str, new: str) -> str:
    """ "Changed base_url from https://old.example to https://new.example." for a destination (never a secret)."""
    return f"Changed {name} from {old or '(empty)'} to {new or '(empty)'}."


def api(message: str) -> str:
    """Entries made over the API say so, so the History page tells them from admin changes at a glance."""
    return f"API: {message}"


def record_many(user, model, objects, action: str = "change") -> int:
    """Log one entry per (object_id, repr, message) about objects of `model`, in one statement; returns the count.

    For operations on a set (erasing a list of profiles): the entries are the same as `record` writes.
    """
    if user is None or not getattr(user, "pk", None) or not objects:
        return 0
    content_type = ContentType.objects.get_for_model(model, for_concrete_model=False)
    entries = LogEntry.objects.bulk_create(
        LogEntry(
            user_id=user.pk,
            content_type=content_type,
            object_id=str(object_id),
            object_repr=str(text)[:200],
            action_flag=FLAGS[action],
            change_message=message,
        )
        for object_id, text, message in objects
    )
    return len(entries)
