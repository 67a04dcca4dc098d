"""The growth comparison against an earlier run's JSON: forwarding per identity at two profile counts."""

import json

from bench import harness, run
from bench.harness import Figure


class Ctx:
    def __init__(self, args, figures, drains):
        self.args, self.figures, self.state = args, figures, {"drains": drains}


def test_growth_from_an_earlier_run_compares_forwarding_time_per_identity_and_the_churn_refresh(tmp_path):
    earlier = tmp_path / "1m.json"
    harness.write_json(
        earlier,
        {"profiles": 1_000_000},
        [
            Figure("forward.mailchimp.1000000", "forward", 30_000.0, "ids/s", better="higher"),
            Figure("refresh.churn", "refresh after churn", 1.5, "s"),
        ],
    )
    args = run.parse(["--profiles", "10000000", "--messages", "1000000", "--growth-from", str(earlier)])
    ctx = Ctx(
        args,
        [
            Figure("forward.mailchimp.1000000", "forward", 15_000.0, "ids/s", better="higher"),
            Figure("refresh.churn", "refresh after churn", 15.0, "s"),
        ],
        {1_000_000: {"rate": 15_000.0}},
    )

    figures = {f.key: f for f in run.growth_figures(ctx, run.growth_from(args.growth_from))}

    forward = figures["growth.forward.profiles"]
    assert forward.value == 2.0  # half the rate: twice the time per identity
    assert forward.ok is False
    assert forward.label == "growth 1,000,000 → 10,000,000 profiles: forwarding time per identity (1,000,000 messages)"
    assert forward.note == "30,000 → 15,000 ids/s"
    assert figures["growth.refresh.churn"].value == 10.0
    assert "growth.forward" not in figures  # one backlog: no 100,000 → 1,000,000 messages comparison
    assert json.loads(earlier.read_text())["meta"]["profiles"] == 1_000_000
