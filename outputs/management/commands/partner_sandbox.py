import signal
import threading

from django.conf import settings
from django.core.management.base import CommandError

from config.commands import RelayCommand
from outputs.partners import registry
from outputs.sandbox import PartnerSandbox


def cannot_listen(host: str, port: int, exc: OSError) -> str:
    return (
        f"Cannot start the partner sandbox on {host}:{port}: {exc.strerror or exc}. Stop what uses the port (a "
        "`make serve` or `make demo` still running?), or set SANDBOX_PORT in .env to a free port: `make demo` and "
        "`make serve` both use it."
    )


def destination_lines(url: str) -> list[str]:
    """One line per partner: what its output's fields take to reach the sandbox at `url`, from the partner."""
    lines = []
    for partner in registry.all_partners():
        labels = {s.name: s.label for s in partner.output_settings} | {"base_url": "base URL override"}
        fields = partner.sandbox_destination(url)
        lines.append(f"{partner.name}: " + ", ".join(f"{labels[k]} {v}" for k, v in fields.items()))
    return lines


class Command(RelayCommand):
    help = (
        "Run the partner sandbox in the foreground: an emulation of the Mailchimp, Braze, AppNexus/Xandr, "
        "Facebook Custom Audiences and webhook APIs for outputs to point their base URL at. Ctrl-C stops it. "
        "See docs/sandbox.md."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="Interface to listen on (default 127.0.0.1).")
        parser.add_argument(
            "--port",
            type=int,
            default=settings.SANDBOX_PORT,
            help=f"Port to listen on (default SANDBOX_PORT, {settings.SANDBOX_PORT}; 0 picks a free one).",
        )
        parser.add_argument(
            "--state-file",
            default=settings.SANDBOX_STATE_FILE,
            help="JSON file the partners' data is restored from and saved to (default SANDBOX_STATE_FILE, "
            f"{settings.SANDBOX_STATE_FILE or 'empty'}); empty keeps it in memory only.",
        )
        parser.add_argument("--verbose", action="store_true", help="Log every request to stderr.")
        parser.add_argument(
            "--seed-demo", action="store_true", help="Create the demo accounts (Mailchimp list, Xandr segment, ...)."
        )

    def handle(self, *args, **options):
        sandbox = PartnerSandbox(verbose=options["verbose"], state_file=options["state_file"])
        try:
            url = sandbox.start(host=options["host"], port=options["port"])
        except OSError as exc:
            raise CommandError(cannot_listen(options["host"], options["port"], exc)) from None
        write = self.stdout.write
        write(f"Partner sandbox listening on {url}")
        write(f"  control API: {url}/_sandbox/  (reset, faults, stats, accounts; see docs/sandbox.md)")
        state_lines(sandbox, write, self.stderr.write)
        write("Point an output at it with these fields of the output's form (admin or API):")
        for line in destination_lines(url):
            write(f"  {line}")
        if options["seed_demo"]:
            demo = sandbox.seed_demo()
            write("Demo accounts:")
            for partner in registry.all_partners():
                if partner.slug in demo:
                    write(f"  {partner.name}: {sandbox.partners[partner.slug].demo_summary(demo[partner.slug])}")
        write("Press Ctrl-C to stop.")
        self.stdout.flush()
        # bin/serve stops its processes with SIGTERM: stop as on Ctrl-C, so the last changes are saved.
        main = threading.current_thread() is threading.main_thread()  # where Python lets a handler be set
        previous = signal.signal(signal.SIGTERM, _interrupt) if main else None
        try:
            sandbox.wait()
        except KeyboardInterrupt:
            write("Stopping the partner sandbox.")
        finally:
            sandbox.stop()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


def state_lines(sandbox, write, warn):
    """Where the sandbox keeps its partners' data, and what it found there when it started."""
    if sandbox.state is None:
        write("  partner data: in memory only (no SANDBOX_STATE_FILE); it is gone when the sandbox stops.")
        return
    write(f"  partner data: kept in {sandbox.state.path} (POST /_sandbox/reset empties it)")
    if sandbox.state.unreadable:
        warn(sandbox.state.note)
    elif sandbox.state.note:
        write(f"  {sandbox.state.note}")


def _interrupt(signum, frame):
    raise KeyboardInterrupt
