"""
The ``greenworks`` command line.

- ``greenworks run package.module:registry`` runs every worker provided to a
  registry until SIGTERM or SIGINT (see :mod:`greenworks._run_command`).
- ``greenworks demo`` is a short live demonstration of the runtime
  (see :mod:`greenworks.demo`).

Each subcommand imports its implementation only when chosen, so that
monkey-patching happens before anything else is imported.
"""

import argparse

__all__ = ["build_parser", "main"]


def build_parser():
    parser = argparse.ArgumentParser(prog="greenworks", description=__doc__.strip().splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run every worker provided to a registry")
    run.add_argument("target", help="'package.module:attribute' naming a zope.interface registry")

    demo = commands.add_parser("demo", help="a short live demo of the runtime")
    demo.add_argument("--seconds", type=float, default=15.0, help="how long to run (default 15)")
    demo.add_argument(
        "--status-port",
        type=int,
        default=0,
        help="serve the status page on 127.0.0.1:PORT (0: any free port)",
    )
    return parser


def main(argv=None):
    """Parse *argv* and run the chosen command; return the process exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "run":
        from greenworks._run_command import run_target

        return run_target(args.target)
    from greenworks.demo import main as demo_main

    return demo_main(args)
