"""The bench's floor what-ifs (``python -m bench.cost``, ``python -m bench.enqueue_floor``)
run and measure what they say they measure.

Tiny sizes, asserting what the tools count, never a time. A file of its own, so
that it runs beside the bench smoke (the test processes take a file each).
"""

from __future__ import annotations

import itertools
import shutil

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_the_floor_what_ifs_measure_what_they_say(capsys: pytest.CaptureFixture[str]) -> None:
    """Counted, not timed: the enqueue floor prints its three variants and times each
    piece of the durable ``apply_async`` once per job (kombu's publish twice: the
    message and its event; the broker being the state's Redis, the enqueue script
    pushes the message); the retry path's floor makes two round trips per attempt
    (a job is two attempts)."""
    from bench import cost, enqueue_floor

    assert enqueue_floor.main(["--jobs", "20", "--runs", "1", "--timers"]) == 0
    printed = capsys.readouterr().out
    for variant in ("durable delay", "plain delay", "plain delay+rt"):
        assert f"| {variant} |" in printed, printed
    pieces = {"FirstMessage.new_job (the record)": "1.00",
              "Store.enqueue_with_message (enqueue script, message pushed too)": "1.00",
              "kombu Producer.publish (message + task-sent event)": "2.00"}  # fmt: skip
    for piece, calls in pieces.items():
        assert f"| {piece} | {calls} |" in printed, printed

    argv = ["--jobs", "20", "--runs", "1", "--variants", "durable,plain+2rt",
            "--job", "fail_once_0s", "--pool", "prefork"]  # fmt: skip
    assert cost.main(argv) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    evalsha = {}
    for variant, line in itertools.pairwise(lines):
        if "Redis commands per job" in line:
            name = variant.split(":")[0].strip()
            evalsha[name] = float(line.split("evalsha ")[1].split(",")[0])
    # Claim + fail, claim + succeed: four per job (a script's first call in each pool
    # process is sent twice, NOSCRIPT and again; the durable side's sweeper adds its own).
    assert 4.0 <= evalsha["plain+2rt"] < 4.5 and evalsha["durable"] >= 4.0, printed


@pytest.mark.skipif(
    shutil.which("valgrind") is None or shutil.which("callgrind_control") is None,
    reason="no valgrind on PATH (apt-get install valgrind; .ci/run does): "
    "bench.script_cost not checked",
)
def test_the_script_cost_counts_every_path_for_both_revisions(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Counted, not timed: each path's instructions per call, for this tree and HEAD,
    with a ratio; every script costs more than a bare EVALSHA, which costs something."""
    from bench import script_cost

    assert script_cost.main(["--calls", "20", "--against", "HEAD"]) == 0
    printed = capsys.readouterr().out
    counts: dict[str, list[float]] = {}
    for line in printed.splitlines():
        for path in (*script_cost.PATHS, "success path (claim+succeed)"):
            if line.strip().startswith(path):
                numbers = line.strip()[len(path) :].split()
                counts[path] = [float(n.rstrip("x").replace(",", "")) for n in numbers]
    assert set(counts) == {*script_cost.PATHS, "success path (claim+succeed)"}, printed
    bare = counts[script_cost.PATHS[0]]
    assert bare[0] > 0 and bare[1] > 0, printed
    for path in script_cost.PATHS[1:]:
        now, then, ratio = counts[path]
        assert now > bare[0] and then > bare[1], printed
        assert ratio == pytest.approx(now / then, abs=0.01), printed


def test_the_script_cost_refuses_what_it_cannot_count() -> None:
    from bench import script_cost

    with pytest.raises(SystemExit) as refused:
        script_cost.main(["--calls", "0"])
    assert refused.value.code == 2
    with pytest.raises(SystemExit) as refused:
        script_cost.main(["--against", "no-such-revision-here"])
    assert refused.value.code == 2
