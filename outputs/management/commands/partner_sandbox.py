from django.core.management.base import BaseCommand, CommandError

from outputs.sandbox import PartnerSandbox


class Command(BaseCommand):
    help = (
        "Run the partner sandbox in the foreground: an emulation of the Mailchimp, Braze, AppNexus/Xandr, "
        "Facebook Custom Audiences and webhook APIs for outputs to point their base URL at. Ctrl-C stops it. "
        "See docs/sandbox.md."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="Interface to listen on (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8125, help="Port to listen on (default 8125; 0 picks one).")
        parser.add_argument("--verbose", action="store_true", help="Log every request to stderr.")
        parser.add_argument(
            "--seed-demo", action="store_true", help="Create the demo accounts (Mailchimp list, Xandr segment, ...)."
        )

    def handle(self, *args, **options):
        sandbox = PartnerSandbox(verbose=options["verbose"])
        try:
            url = sandbox.start(host=options["host"], port=options["port"])
        except OSError as exc:
            raise CommandError(
                f"Cannot listen on {options['host']}:{options['port']}: {exc.strerror or exc}."
            ) from None
        write = self.stdout.write
        write(f"Partner sandbox listening on {url}")
        write(f"  control API    {url}/_sandbox/  (reset, faults, stats, accounts; see docs/sandbox.md)")
        write(f"  Mailchimp      {url}/mailchimp/{{dc}}/3.0   stands for https://{{dc}}.api.mailchimp.com/3.0")
        write(f"  Braze          {url}/braze               stands for https://rest.<instance>.braze.com")
        write(f"  AppNexus/Xandr {url}/xandr               stands for https://api.appnexus.com")
        write(f"  Facebook       {url}/facebook            stands for https://graph.facebook.com")
        write(f"  Webhook        {url}/webhook/{{endpoint}}")
        if options["seed_demo"]:
            demo = sandbox.seed_demo()
            mc, xa, br, fb, wh = (demo[p] for p in ("mailchimp", "xandr", "braze", "facebook", "webhook"))
            write("Demo accounts:")
            write(f"  Mailchimp      API key {mc['api_key']}, list {mc['list_id']}; base URL {mc['base_url']}")
            write(
                f"  AppNexus/Xandr user {xa['username']} / password {xa['password']}, member {xa['member_id']}, "
                f"segment {xa['segment_id']}; base URL {xa['base_url']}"
            )
            write(f"  Braze          API key {br['api_key']}; REST endpoint {br['base_url']}")
            write(
                f"  Facebook       access token {fb['access_token']}, ad account {fb['ad_account_id']}, audience "
                f"{fb['audience_id']}; base URL {fb['base_url']}"
            )
            write(f"  Webhook        endpoint {wh['name']}, secret {wh['secret']}; URL {wh['url']}")
        write("Press Ctrl-C to stop.")
        self.stdout.flush()
        try:
            sandbox.wait()
        except KeyboardInterrupt:
            write("Stopping the partner sandbox.")
        finally:
            sandbox.stop()
