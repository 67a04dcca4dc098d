import logging

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count, Q
from django.utils import timezone
from rich.console import Console
from rich.table import Table

from audiences.models import Audience
from audiences.refresh import refresh_audience
from audiences.stats import audience_breakdown
from connections import demo, services
from connections.management.commands import verify_connections
from connections.models import Connection, OutboxMessage
from outputs.sandbox.client import SandboxClient
from outputs.sandbox.server import PartnerSandbox


class Command(BaseCommand):
    help = (
        "The seed document's story end to end: 100 users in 'Potential Parisians', forwarded to Mailchimp and "
        "AppNexus in the partner sandbox through a real django-q2 cluster, then checked at the partner."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--sandbox-port",
            type=int,
            default=8125,
            help="Port for the partner sandbox; the one `make serve` uses, so the demo's outputs keep working "
            "there (a free port is taken when it is busy).",
        )

    def handle(self, *args, sandbox_port, **options):
        out = Console(file=self.stdout, highlight=False, width=130)
        logging.getLogger("django-q").setLevel(logging.WARNING)  # "Enqueued …" lines would interleave the story
        with PartnerSandbox() as sandbox:
            try:
                url = sandbox.start("127.0.0.1", sandbox_port)
            except OSError:
                url = sandbox.start("127.0.0.1", 0)
            try:
                demo.check_sandbox_allowed(url)
            except ValidationError as exc:
                raise CommandError(f"The demo sends to the partner sandbox at {url}: {exc.messages[0]}") from None
            client = SandboxClient(url)
            client.mailchimp_list(demo.MAILCHIMP_KEY, demo.MAILCHIMP_LIST, "Potential Parisians")
            # Like a Xandr member whose Batch Segment Service was set up for BSS Avro, the demo output's format.
            xandr_account = (demo.XANDR["username"], demo.XANDR["password"], demo.XANDR["member_id"])
            client.xandr_account(*xandr_account, file_format="avro")
            client.xandr_segment(demo.XANDR["member_id"], demo.XANDR["segment_id"])
            out.print(f"Partner sandbox (Mailchimp, AppNexus) listening on {url}")

            demo.reset_demo_data()
            demo.seed_people(timezone.now())
            audience = Audience.objects.create(name=demo.AUDIENCE, criteria=demo.POTENTIAL_PARISIANS)
            size = refresh_audience(audience).size
            counts = audience_breakdown(audience.pk)
            out.print(
                f"\n[bold]1. The audience[/] '{audience.name}' matches {size} users: "
                f"{counts['email']} have an email address, {counts['android_aaid']} an Android advertising ID."
            )

            mailchimp, xandr = demo.create_outputs(url)
            out.print(
                "[bold]2. Outputs[/]: Mailchimp (Email Type html, Double Opt-In off, Delete on Subscription "
                "End off) and AppNexus (member 1234, BSS Avro files)."
            )
            with demo.QCluster():
                conns = [
                    services.connect(audience, mailchimp, {"list_id": demo.MAILCHIMP_LIST}),
                    services.connect(audience, xandr, {"segment_id": demo.XANDR["segment_id"]}),
                ]
                out.print(
                    f"[bold]3. Connected[/]: Mailchimp list {demo.MAILCHIMP_LIST} ({conns[0].queued_on_connect} "
                    f"queued, realtime) and AppNexus segment {demo.XANDR['segment_id']} "
                    f"({conns[1].queued_on_connect} queued, uploaded at an interval: the demo asks for it now)."
                )
                demo.request_uploads(conns)
                if not demo.wait_until_forwarded(conns):
                    raise CommandError("Forwarding did not finish within 90 seconds; is the qcluster running?")
                out.print("[bold]4. Verify[/]: what each partner holds after django-q2 forwarded the audience.")
                out.print(self.report(audience, conns, client))

                demo.leave(demo.LEAVERS)
                demo.request_uploads(conns)
                if not demo.wait_until_forwarded(conns):
                    raise CommandError("Forwarding of the removals did not finish within 90 seconds.")
                audience.refresh_from_db()
                out.print(
                    f"\n[bold]5. Ten members stop qualifying[/] (their status became Free): the audience has "
                    f"{audience.size} members and the partners follow."
                )
                out.print(self.report(audience, conns, client))

            out.print(
                "\n[bold]6. Verify and troubleshoot[/]: every check of both connections and each one's size funnel, "
                "as `verify_connections` prints them."
            )
            conns = Connection.objects.filter(pk__in=[c.pk for c in conns]).select_related("audience", "output")
            verify_connections.render(out, verify_connections.verify_each(conns.order_by("pk")))

    def report(self, audience, conns, client) -> Table:
        audience.refresh_from_db()
        table = Table("Connection", "Audience", "Partner accepts", "Forwarded", "Partner holds", "Why they differ")
        counts = audience_breakdown(audience.pk)
        sent = {
            row["connection_id"]: row
            for row in OutboxMessage.objects.filter(connection__in=conns, state="delivered")
            .values("connection_id")
            .annotate(adds=Count("pk", filter=Q(action="add")), removes=Count("pk", filter=Q(action="remove")))
        }
        for conn in Connection.objects.filter(pk__in=[c.pk for c in conns]).select_related("output"):
            if conn.output.kind == "mailchimp":
                holds = client.mailchimp_list_state(demo.MAILCHIMP_LIST)["member_count"]
                have, kind = counts["email"], "email addresses"
            else:
                holds = client.xandr_segment_state(demo.XANDR["segment_id"])["count"]
                have, kind = counts["android_aaid"] + counts["ios_idfa"], "device IDs"
            why = f"{conn.output.partner.name} accepts only {kind}; {have} of the {audience.size} members have one."
            row = sent.get(conn.pk, {"adds": 0, "removes": 0})
            forwarded = f"{row['adds']} adds" + (f", {row['removes']} removes" if row["removes"] else "")
            table.add_row(str(conn.output), str(audience.size), str(have), forwarded, str(holds), why)
        return table
