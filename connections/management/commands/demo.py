import logging
from functools import partial

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.db.models import Count, Q
from django.utils import timezone
from rich.table import Table

from audiences.models import Audience
from audiences.refresh import refresh_audience
from audiences.stats import audience_breakdown
from config.commands import RelayCommand
from connections import demo, funnel, services
from connections.management.commands import verify_connections
from connections.management.commands._common import console
from connections.models import Connection, OutboxMessage
from outputs.management.commands.partner_sandbox import cannot_listen
from outputs.sandbox.client import SandboxClient
from outputs.sandbox.server import PartnerSandbox


class Command(RelayCommand):
    help = (
        "The seed document's story end to end: 100 users in 'Potential Parisians', forwarded to Mailchimp and "
        "AppNexus in the partner sandbox through a real django-q2 cluster, then checked at the partner."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--sandbox-port",
            type=int,
            default=settings.SANDBOX_PORT,
            help=f"Port for the partner sandbox (default SANDBOX_PORT, {settings.SANDBOX_PORT}): the one `make serve` "
            "uses, so the demo's outputs keep working there. 0 picks a free port, for a demo on its own.",
        )

    def handle(self, *args, sandbox_port, **options):
        out = console(self)
        say = partial(out.print, soft_wrap=True)  # a sentence is one line: the terminal wraps it, not the command
        logging.getLogger("django-q").setLevel(logging.WARNING)  # "Enqueued …" lines would interleave the story
        # On SANDBOX_PORT the partners keep what the demo sends for `make serve`'s sandbox to restore; a demo on
        # a port of its own keeps nothing, and leaves that sandbox's data alone.
        shared = sandbox_port == settings.SANDBOX_PORT
        sandbox = PartnerSandbox(state_file=settings.SANDBOX_STATE_FILE if shared else None)
        try:
            url = sandbox.start("127.0.0.1", sandbox_port)
        except OSError as exc:
            raise CommandError(cannot_listen("127.0.0.1", sandbox_port, exc)) from None
        if sandbox.state is not None and sandbox.state.unreadable:
            self.stderr.write(sandbox.state.note)
        try:
            try:
                demo.check_sandbox_allowed(url)
            except ValidationError as exc:
                raise CommandError(f"The demo sends to the partner sandbox at {url}: {exc.messages[0]}") from None
            client = SandboxClient(url)
            client.mailchimp_list(demo.MAILCHIMP_KEY, demo.MAILCHIMP_LIST, "Potential Parisians")
            for name, list_id in demo.CAMPAIGN_LISTS.items():
                client.mailchimp_list(demo.MAILCHIMP_KEY, list_id, f"Paris campaign {name}")
            # Like a Xandr member whose Batch Segment Service was set up for BSS Avro, the demo output's format.
            xandr_account = (demo.XANDR["username"], demo.XANDR["password"], demo.XANDR["member_id"])
            client.xandr_account(*xandr_account, file_format="avro")
            client.xandr_segment(demo.XANDR["member_id"], demo.XANDR["segment_id"])
            say(f"Partner sandbox (Mailchimp, AppNexus) listening on {url}")

            demo.reset_demo_data()
            demo.seed_people(timezone.now())
            audience = Audience.objects.create(name=demo.AUDIENCE, criteria=demo.POTENTIAL_PARISIANS)
            size = refresh_audience(audience).size
            counts = audience_breakdown(audience.pk)
            say(
                f"\n[bold]1. The audience[/] '{audience.name}' matches {size} users: "
                f"{counts['email']} have an email address, {counts['android_aaid']} an Android advertising ID."
            )

            mailchimp, xandr = demo.create_outputs(url)
            say(
                "[bold]2. Outputs[/]: Mailchimp (Email Type html, Double Opt-In off, Delete on Subscription "
                f"End off) and AppNexus (member {demo.XANDR['member_id']}, BSS Avro files)."
            )
            with demo.QCluster():
                conns = [
                    services.connect(audience, mailchimp, {"list_id": demo.MAILCHIMP_LIST}),
                    services.connect(audience, xandr, {"segment_id": demo.XANDR["segment_id"]}),
                ]
                say(
                    f"[bold]3. Connected[/]: Mailchimp list {demo.MAILCHIMP_LIST} ({conns[0].queued_on_connect} "
                    f"queued, realtime) and AppNexus segment {demo.XANDR['segment_id']} "
                    f"({conns[1].queued_on_connect} queued, uploaded at an interval: the demo asks for it now)."
                )
                demo.request_uploads(conns)
                if not demo.wait_until_forwarded(conns):
                    raise CommandError("Forwarding did not finish within 90 seconds; is the qcluster running?")
                say("[bold]4. Verify[/]: what each partner holds after django-q2 forwarded the audience.")
                out.print(self.report(audience, conns, client))

                demo.leave(demo.LEAVERS)
                demo.request_uploads(conns)
                if not demo.wait_until_forwarded(conns):
                    raise CommandError("Forwarding of the removals did not finish within 90 seconds.")
                audience.refresh_from_db()
                say(
                    f"\n[bold]5. Ten members stop qualifying[/] (their status became Free): the audience has "
                    f"{audience.size} members and the partners follow."
                )
                out.print(self.report(audience, conns, client))

                tests = demo.split_and_connect(audience, mailchimp)
                if not demo.wait_until_forwarded(tests):
                    raise CommandError("Forwarding of the variants did not finish within 90 seconds.")
                say(
                    f"\n[bold]6. An A/B test[/]: '{audience.name}' split 45/45/10; A and B each connected to a "
                    "Mailchimp campaign list, control to nothing."
                )
                for line in demo.variant_lines(audience, client):
                    say(line)

            say(
                "\n[bold]7. Verify and troubleshoot[/]: every check of both connections and each one's size funnel, "
                "as `verify_connections` prints them."
            )
            conns = Connection.objects.filter(pk__in=[c.pk for c in conns]).select_related(
                "audience", "variant", "output"
            )
            verify_connections.render(out, verify_connections.verify_each(conns.order_by("pk")))
            if shared:
                kept = f" and what they hold (kept in {sandbox.state.path})" if sandbox.state is not None else ""
                say(
                    f"\nThe demo's outputs point at {url}: `make serve` starts its sandbox there (SANDBOX_PORT) "
                    f"with the same demo accounts{kept}, so they keep working in the admin."
                )
        finally:
            sandbox.stop()

    def report(self, audience, conns, client) -> Table:
        """Mailchimp then AppNexus, as the sentences name them; each partner's words for what it accepts."""
        audience.refresh_from_db()
        table = Table("Connection", "Audience", "Partner accepts", "Forwarded", "Partner holds", "Why they differ")
        sent = {
            row["connection_id"]: row
            for row in OutboxMessage.objects.filter(connection__in=conns, state=OutboxMessage.State.DELIVERED)
            .values("connection_id")
            .annotate(adds=Count("pk", filter=Q(action="add")), removes=Count("pk", filter=Q(action="remove")))
        }
        ordered = Connection.objects.filter(pk__in=[c.pk for c in conns]).select_related("output").order_by("pk")
        for conn in ordered:
            partner = conn.output.partner
            have = funnel.compute(conn, partner_count=None).steps[1].count
            kind = funnel.types_phrase(partner.accepted_types(conn.settings))
            why = f"{partner.name} accepts only {kind}; {have} of the {audience.size} members have one."
            row = sent.get(conn.pk, {"adds": 0, "removes": 0})
            forwarded = f"{row['adds']} adds" + (f", {row['removes']} removes" if row["removes"] else "")
            holds = demo.partner_holds(client, conn)
            table.add_row(str(conn.output), str(audience.size), str(have), forwarded, str(holds), why)
        return table
