"""``kanaria-operator``: run the operator (a thin wrapper around ``kopf run``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

import kopf

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="kanaria-operator", description=__doc__)
    parser.add_argument("--namespace", action="append", default=None,
                        help="watch only this namespace (repeatable); all namespaces by default")
    parser.add_argument("--liveness", default=os.environ.get("KANARIA_LIVENESS", "http://0.0.0.0:8081/healthz"),
                        help="liveness endpoint URL kopf serves")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # one line per handler call
    import kanaria.controller.handlers  # noqa: F401  (registers the handlers)
    from kanaria.controller import state

    state.WATCHED[:] = args.namespace or []
    from kanaria.controller.safejson import install

    logging.getLogger("kanaria").info("decoding API responses depth-safely: %s", ", ".join(install()))

    asyncio.run(
        kopf.operator(
            clusterwide=not args.namespace,
            namespaces=args.namespace or [],
            liveness_endpoint=args.liveness or None,
            standalone=True,
        )
    )


if __name__ == "__main__":
    main()
