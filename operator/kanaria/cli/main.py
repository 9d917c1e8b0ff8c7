"""`kubectl kanaria`: see and steer ModelDeployment rollouts.

    kubectl kanaria list [-A]                      kubectl kanaria promote NAME [--full]
    kubectl kanaria status NAME [--watch]          kubectl kanaria abort|retry|pause|resume NAME
    kubectl kanaria history NAME                   kubectl kanaria rollback NAME --to REVISION
    kubectl kanaria report NAME -o report.html     kubectl kanaria retrain|adopt NAME

Every action is one merge patch of the `kanaria.io/action` annotation; the operator acts on it.
Errors print one line on stderr and exit with code 1.
"""

from __future__ import annotations

import argparse
import sys
import time
import unicodedata
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kanaria.cli import actions, render
from kanaria.cli.kube import CliError, Kube, connect
from kanaria.cli.report import write_report

__all__ = ["main", "build_parser"]

VERBS = {  # command → annotation verb
    "promote": "promote", "abort": "abort", "retry": "retry", "pause": "pause",
    "resume": "resume", "rollback": "rollback", "retrain": "retrain", "adopt": "adopt",
}


def _now() -> datetime:
    return datetime.now(UTC)


def _globals() -> argparse.ArgumentParser:
    """kubectl's connection flags, accepted before or after the command."""
    p = argparse.ArgumentParser(add_help=False)
    s = argparse.SUPPRESS
    p.add_argument("--kubeconfig", default=s, help="path to the kubeconfig file")
    p.add_argument("--context", default=s, help="the kubeconfig context to use")
    p.add_argument("-n", "--namespace", default=s,
                   help="namespace (default: the context's namespace, else default)")
    return p


def build_parser() -> argparse.ArgumentParser:
    common = _globals()
    parser = argparse.ArgumentParser(
        prog="kubectl kanaria", parents=[common],
        description="See and steer Kanaria ModelDeployment rollouts.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, helptext: str, *, named: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=helptext, description=helptext)
        if named:
            p.add_argument("name", metavar="NAME", help="the ModelDeployment")
        return p

    def output(p: argparse.ArgumentParser) -> None:
        p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")

    p = command("list", "list ModelDeployments", named=False)
    p.add_argument("-A", "--all-namespaces", action="store_true")
    output(p)
    p = command("status", "phase, step, weights and the evidence behind the last decision")
    output(p)
    p.add_argument("-w", "--watch", action="store_true", help="redraw on change until the rollout settles")
    p.add_argument("--timeout", type=float, default=0.0, help="with --watch: give up after this many seconds (0: never)")
    p.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)
    p = command("history", "the revisions and their outcomes (status.history)")
    output(p)
    for verb, text in (
        ("promote", "end the current step (a pause or an analysis) and go on; --full: promote now"),
        ("abort", "roll the canary back (or revert during the watch window)"),
        ("retry", "try the last rejected revision again"),
        ("pause", "hold the rollout where it is"),
        ("resume", "continue a paused rollout"),
        ("rollback", "make a kept older revision the stable one"),
        ("retrain", "start the retraining Job now (spec.retraining)"),
        ("adopt", "write the retraining candidate into spec.model (its rollout begins)"),
    ):
        p = command(verb, text)
        if verb == "promote":
            p.add_argument("--full", action="store_true", help="skip every remaining step and promote now (the watch window still applies)")
        if verb == "rollback":
            p.add_argument("--to", required=True, metavar="REVISION", help="a retired or prior revision")
        p.add_argument("--wait", action="store_true", help="wait until the operator handled it")
        p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait with --wait (default 60)")
    p = command("report", "write an HTML or PNG timeline of the rollout")
    p.add_argument("-o", "--output", default="report.html", metavar="FILE", help="report.html or report.png")
    p.add_argument("--prometheus", metavar="URL", help="also plot kanaria_canary_weight from this Prometheus")
    return parser


def printable(text: str) -> str:
    """``text`` with every control, format or private-use character (terminal escape sequences,
    right-to-left overrides, zero-width characters) shown as ``\\u{XXXX}`` instead of acting on
    the terminal: what others wrote into an object must not rewrite what a person reads."""
    return "".join(
        ch if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf", "Co", "Cs", "Zl", "Zp")
        else f"\\u{{{ord(ch):04x}}}"
        for ch in text
    )


def _print(text: str) -> None:
    if text:
        print(printable(text), flush=True)


def cmd_list(kube: Kube, args: argparse.Namespace) -> int:
    items = kube.list(None if args.all_namespaces else kube.namespace)
    if args.output != "table":
        _print(render.dump({"apiVersion": "v1", "kind": "List", "items": items}, args.output))
    elif not items:
        where = "any namespace" if args.all_namespaces else f"{kube.namespace} namespace"
        print(f"No ModelDeployments found in {where}.", file=sys.stderr)
    else:
        _print(render.list_view(items, all_namespaces=args.all_namespaces, now=_now()))
    return 0


def cmd_status(kube: Kube, args: argparse.Namespace) -> int:
    def show(obj: dict[str, Any]) -> str:
        if args.output == "table":
            return render.status_view(obj, _now())
        return render.dump(obj, args.output)

    fetch = _fetcher(kube, args)
    if not args.watch:
        _print(show(fetch()))
        return 0
    return watch(fetch, show, args.timeout, args.interval)


def watch(
    fetch: Callable[[], dict[str, Any]], show: Callable[[dict[str, Any]], str],
    timeout: float, interval: float,
) -> int:
    """Redraw whenever the object changes, until it settles, the deadline passes, or Ctrl-C."""
    tty = sys.stdout.isatty()
    deadline = time.monotonic() + timeout if timeout > 0 else None
    seen: object = None
    frames = 0
    try:
        while True:
            obj = fetch()
            version = (obj.get("metadata") or {}).get("resourceVersion")
            if version != seen or frames == 0:
                seen = version
                prefix = "\x1b[H\x1b[2J" if tty else ("---\n" if frames else "")
                print(prefix + printable(show(obj)), flush=True)
                frames += 1
            if render.settled(obj):
                return 0
            if deadline is not None and time.monotonic() >= deadline:
                phase = (obj.get("status") or {}).get("phase", "Pending")
                raise CliError(f"still {phase} after {timeout:g}s (stopped watching)")
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0


def cmd_history(kube: Kube, args: argparse.Namespace) -> int:
    obj = _fetcher(kube, args)()
    entries = (obj.get("status") or {}).get("history") or []
    if args.output != "table":
        _print(render.dump(entries, args.output))
    elif not entries:
        print(f'modeldeployment "{args.name}" has no history yet.', file=sys.stderr)
    else:
        _print(render.history_view(obj, _now()))
    return 0


def cmd_action(kube: Kube, args: argparse.Namespace) -> int:
    verb = VERBS[args.command]
    arg = None
    if verb == "promote" and args.full:
        verb = "promote-full"
    if verb == "rollback":
        arg = args.to
        actions.check_rollback(_fetcher(kube, args)(), arg)
    value = actions.action_value(verb, arg)
    kube.merge_patch(args.name, kube.namespace, actions.action_patch(value))
    print(f'{verb}{" to " + arg if arg else ""} requested for modeldeployment "{args.name}" '
          f'in namespace "{kube.namespace}" ({actions.ANNOTATION}={value})', flush=True)
    if args.wait:
        obj = actions.wait_handled(_fetcher(kube, args), value, args.timeout)
        status = obj.get("status") or {}
        step = render.step_of(obj)
        where = f", step {step[0]}/{step[1]}, canary weight {status.get('canaryWeight', 0)}%" if step else ""
        print(printable(f"handled: phase {status.get('phase', 'Pending')}{where}: {status.get('message', '')}"))
    return 0


def cmd_report(kube: Kube, args: argparse.Namespace) -> int:
    obj = _fetcher(kube, args)()
    out = write_report(obj, Path(args.output), _now(), args.prometheus)
    print(f"wrote {out}")
    return 0


def _fetcher(kube: Kube, args: argparse.Namespace) -> Callable[[], dict[str, Any]]:
    return lambda: kube.get(args.name, kube.namespace)


COMMANDS: dict[str, Callable[[Kube, argparse.Namespace], int]] = {
    "list": cmd_list, "status": cmd_status, "history": cmd_history, "report": cmd_report,
    **{verb: cmd_action for verb in VERBS},
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        kube = connect(getattr(args, "kubeconfig", None), getattr(args, "context", None),
                       getattr(args, "namespace", None))
        try:
            return COMMANDS[args.command](kube, args)
        finally:
            kube.close()
    except CliError as exc:
        print(printable(f"error: {exc}"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
