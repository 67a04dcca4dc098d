from django.core.exceptions import ValidationError

from audiences.models import Audience
from config.commands import RelayCommand, called_wrongly
from connections import services
from connections.management.commands._common import console
from connections.models import Connection
from connections.queries import duplicate_of
from outputs.models import Output


class Command(RelayCommand):
    help = (
        "Connect an audience to an output: validate the connection settings against the partner's schema, then "
        "queue the audience's current members (the backfill). Prints the connection ID."
    )

    def add_arguments(self, parser):
        parser.add_argument("audience", metavar="AUDIENCE", help="The audience's name, exactly as shown.")
        parser.add_argument("output", metavar="OUTPUT", help="The output's name, exactly as shown.")
        parser.add_argument(
            "--setting",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="A connection setting, such as list_id=a1b2c3d4e5; repeat for several. Yes/no settings take "
            "true or false; multiple-choice settings take comma-separated values (identity_types=email,ios_idfa).",
        )
        parser.add_argument(
            "--variant", metavar="NAME", help="Forward one variant of the audience (`manage.py variants AUDIENCE`)."
        )
        parser.add_argument(
            "--mode",
            choices=Connection.Mode.values,
            help="realtime (each change as it comes) or interval (queued uploads). Default: the partner's.",
        )
        parser.add_argument(
            "--every-minutes", type=int, metavar="N", help="Interval mode: upload at least every N minutes."
        )
        parser.add_argument(
            "--every-messages", type=int, metavar="N", help="Interval mode: upload as soon as N messages wait."
        )

    def handle(self, *args, audience, output, setting, mode, every_minutes, every_messages, variant=None, **options):
        audience_obj = Audience.objects.filter(name=audience).first()
        if audience_obj is None:
            raise called_wrongly(f"No audience named '{audience}'.")
        variant_obj = None
        if variant is not None:
            variant_obj = audience_obj.variants.filter(name=variant).first()
            if variant_obj is None:
                names = ", ".join(audience_obj.variants.values_list("name", flat=True)) or "none"
                raise called_wrongly(f"--variant: '{audience}' has no variant '{variant}' ({names}).")
        output_obj = Output.objects.filter(name=output).first()
        if output_obj is None:
            raise called_wrongly(f"No output named '{output}'.")
        values = self._settings(output_obj, setting)
        try:
            cleaned, *_ = services.clean_connection(output_obj, values, mode, every_minutes, every_messages)
            services.clean_variant_for(output_obj, cleaned, variant_obj)
            twin = duplicate_of(audience_obj, output_obj, cleaned)
            if twin is not None:
                raise called_wrongly(
                    f"{services.label(twin)} already exists with these settings (connection {twin.pk})."
                )
            conn = services.connect(
                audience_obj, output_obj, values, mode, every_minutes, every_messages, variant=variant_obj
            )
        except ValidationError as exc:
            raise called_wrongly(self._problems(exc)) from None
        out = console(self)
        out.print(services.connected(conn))
        out.print(f"Connection ID: [bold]{conn.pk}[/bold]")
        out.print(f"Queued: {conn.queued_on_connect:,}")

    @staticmethod
    def _settings(output, pairs) -> dict:
        kinds = {s.name: s.kind for s in output.partner.connection_settings}
        values = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            key = key.strip()
            if not sep or not key:
                raise called_wrongly(f"--setting {pair!r}: expected KEY=VALUE, such as list_id=a1b2c3d4e5.")
            if key not in kinds:
                known = ", ".join(kinds) or "none"
                raise called_wrongly(
                    f"--setting {key}: {output.partner.name} has no such connection setting ({known})."
                )
            values[key] = [v.strip() for v in value.split(",") if v.strip()] if kinds[key] == "multichoice" else value
        return values

    @staticmethod
    def _problems(exc: ValidationError) -> str:
        lines = []
        for key, problems in exc.message_dict.items():
            name = key.removeprefix("settings.")
            flag = {"delivery_mode": "--mode", "variant": "--variant", "interval_minutes": "--every-minutes",
                    "interval_messages": "--every-messages"}.get(name, f"--setting {name}")  # fmt: skip
            lines.extend(f"{flag}: {problem}" for problem in problems)
        return "\n".join(lines)
