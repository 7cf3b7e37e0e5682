#!/usr/bin/env python3
"""Publish one event straight to NATS JetStream, as a service with a NATS client would.

    PYTHONPATH=.tools/python python3 scripts/nats_publish.py --url nats://127.0.0.1:4222 \\
        NAMESPACE EVENT_TYPE [--id EVENT_ID] [PAYLOAD]

The subject is events.<namespace>.<event-type>; --id becomes the Nats-Msg-Id header, the event
id that deduplicates repeats and that deliveries carry as webhook-id. Prints the stream's ack.
"""

import argparse
import asyncio
import json
import os
import sys

try:
    import nats
except ImportError:
    # Fall back to the project-local install made by scripts/tools.sh.
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".tools", "python"))
    try:
        import nats
    except ImportError:
        sys.exit("nats_publish: the nats-py package is missing; run scripts/tools.sh and set PYTHONPATH=.tools/python")


async def publish(args):
    nc = await nats.connect(args.url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        headers = {"Content-Type": args.content_type}
        if args.id:
            headers["Nats-Msg-Id"] = args.id
        subject = f"events.{args.namespace}.{args.event_type}"
        ack = await nc.jetstream().publish(subject, args.payload.encode(), headers=headers, timeout=5)
        print(json.dumps({"subject": subject, "id": args.id, "stream": ack.stream, "seq": ack.seq,
                          "duplicate": bool(ack.duplicate)}))
    finally:
        await nc.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    parser.add_argument("--id", help="event id, sent as the Nats-Msg-Id header")
    parser.add_argument("--content-type", default="application/json")
    parser.add_argument("namespace")
    parser.add_argument("event_type")
    parser.add_argument("payload", nargs="?", default="{}")
    args = parser.parse_args()
    try:
        asyncio.run(publish(args))
    except Exception as error:  # noqa: BLE001 - one clear line instead of a traceback
        sys.exit(f"nats_publish: {type(error).__name__}: {error}")


if __name__ == "__main__":
    main()
