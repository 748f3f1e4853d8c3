"""Run the choreographed shop once and print its checks: ``python examples/shop/run.py nats``."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from legato.demo.shop.run import run_shop


async def main(broker: str) -> int:
    with tempfile.TemporaryDirectory() as d:
        report = await run_shop(Path(d) / "shop", broker, n=60)
    print(f"{report.confirmed} confirmed, {report.cancelled} cancelled")
    for c in report.checks:
        print(f"{'ok ' if c.ok else 'BAD'} {c.name}: {c.detail}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "redis")))
