# Copyright 2026 The superneuron_ros Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
Entry point of the `superneuron` command: one subcommand per module of this package.

Each subcommand module exposes ``add_parser(subparsers)``, which registers its parser and sets
``func`` to a callable taking the parsed ``argparse.Namespace`` and returning an exit code.
"""

import argparse
import importlib
import logging
import os
import sys

# Subcommand name -> module in this package. Modules are imported lazily so that
# `superneuron --help` stays fast and one broken optional dependency only affects its command.
SUBCOMMANDS = {
    'scenes': 'scenes',
    'calibrate': 'calibrate',
    'eval': 'evaluate',
    'bench': 'bench',
    'train-demo': 'train_demo',
    'demo': 'demo',
    'import-bag': 'import_bag',
    'loadtest': 'loadtest',
}


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every available subcommand registered."""
    parser = argparse.ArgumentParser(
        prog='superneuron',
        description='Offline tools for Super Neuron profiles: scenes, calibrate, eval, bench, '
                    'train-demo, demo, import-bag, loadtest.')
    parser.add_argument('-v', '--verbose', action='store_true', help='debug logging')
    subparsers = parser.add_subparsers(dest='command', metavar='COMMAND')
    subparsers.required = True
    for module_name in SUBCOMMANDS.values():
        try:
            module = importlib.import_module(f'superneuron_ros.cli.{module_name}')
        except ModuleNotFoundError as exc:
            if exc.name == f'superneuron_ros.cli.{module_name}':
                continue
            raise
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `superneuron` command and return its exit code."""
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format='%(levelname)s %(name)s: %(message)s')
    from superneuron_ros.errors import SuperneuronError
    try:
        return int(args.func(args) or 0)
    except SuperneuronError as exc:
        logging.getLogger('superneuron').error('%s', exc)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == '__main__':
    sys.exit(main())
