"""``infinity-data``: the data tools of ``data_pipelines.cli`` plus ``cache``, which needs the model code."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from data_pipelines.cli import main as data_tools_main
from infinity_train.cache_command import add_cache_command


def main(argv: Sequence[str] | None = None) -> int:
    return data_tools_main(argv, extra_commands=(add_cache_command,))


if __name__ == "__main__":
    sys.exit(main())
