#!/usr/bin/env python3
"""Publishes notifications to cascade, as a backend system would.

    python producer.py [all|publish|dead-letter|http]

publish      one notification over RabbitMQ: persistent, JSON, confirmed
dead-letter  a deliberately bad one, then its reason from the dead-letter queue
http         one notification through the HTTP intake instead of RabbitMQ
all          the three in turn (the default)

Settings come from the environment; the defaults fit a local stack
(`docker compose up`, docs/local-stack.md). See docs/producers.md.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid

import pika

AMQP_URL = os.environ.get("CASCADE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
QUEUE = os.environ.get("CASCADE_AMQP_QUEUE", "cascade.notifications")
DEAD_LETTER_QUEUE = os.environ.get("CASCADE_AMQP_DEAD_LETTER_QUEUE", "cascade.dead")
API_URL = os.environ.get("CASCADE_API_URL", "http://127.0.0.1:8080")
TOKEN = os.environ.get("CASCADE_RECEIPT_TOKEN", "change-me")

# How long to wait for the daemon to dead-letter the bad message.
DEAD_LETTER_WAIT_S = 10
# How often to send an HTTP batch the daemon could not take (503) or could
# not be reached for; a batch is safe to send again, its ids are idempotent.
HTTP_ATTEMPTS = 5


def notification(order):
    """A `delivery_delay` notification for one order. The id is the
    idempotency key: derive it from the event, so a retry of the same event
    can never notify the customer twice."""
    return {
        "id": f"order-{order}:delayed",
        "policy": "delivery_delay",
        "customer": {
            "id": "c-42",
            "timezone": "Europe/Moscow",
            "contacts": {"vk": "123456789", "sms": "+79161234567"},
        },
        "content": {
            "text": f"Заказ {order} задерживается на 2 дня",
            "link": f"https://shop.example.ru/orders/{order}",
        },
    }


def new_order():
    # A made-up order number, so that every run starts new cascades (a
    # second message with a known id would be taken as a duplicate).
    return uuid.uuid4().hex[:10]


def connect():
    # CASCADE_AMQP_URL may list a cluster's nodes, separated by commas:
    # pika tries them in order.
    nodes = [pika.URLParameters(url.strip()) for url in AMQP_URL.split(",") if url.strip()]
    return pika.BlockingConnection(nodes)


class NotTaken(Exception):
    """RabbitMQ did not take a message: publish it again later."""


def publish(channel, body):
    """Publishes one notification and returns once RabbitMQ confirmed it.

    The channel is in confirm mode, so pika waits for the broker's ack and
    raises NackError if it refused the message, or UnroutableError if it
    could not route it (`mandatory`: no queue of that name)."""
    try:
        channel.basic_publish(
            exchange="",  # the default exchange: the routing key is the queue's name
            routing_key=QUEUE,
            body=json.dumps(body, ensure_ascii=False).encode("utf-8"),
            properties=pika.BasicProperties(
                content_type="application/json",
                delivery_mode=pika.DeliveryMode.Persistent,
                message_id=body["id"],
            ),
            mandatory=True,
        )
    except pika.exceptions.UnroutableError:
        raise NotTaken(f"no queue {QUEUE} to route {body['id']} to (the daemon declares it when it starts)") from None
    except pika.exceptions.NackError:
        raise NotTaken(f"RabbitMQ refused {body['id']}") from None


def dead_letter_reason(channel, message_id):
    """Waits for the message `message_id` in the dead-letter queue and
    returns (code, sentence) from its headers, or None.

    Takes the queue's messages one by one without acknowledging them,
    acknowledges (removes) only ours, and hands every other one back as it
    was. Operators read this queue with `cascade dead list` and `show`."""
    deadline = time.monotonic() + DEAD_LETTER_WAIT_S
    held = None  # the last delivery tag of someone else's message in hand
    try:
        while time.monotonic() < deadline:
            method, properties, _ = channel.basic_get(DEAD_LETTER_QUEUE, auto_ack=False)
            if method is None:
                channel.connection.sleep(0.1)
            elif properties.message_id == message_id:
                channel.basic_ack(method.delivery_tag)
                headers = properties.headers or {}
                return headers.get("x-cascade-error-code"), headers.get("x-cascade-error")
            else:
                held = method.delivery_tag
        return None
    finally:
        if held is not None:
            channel.basic_nack(held, multiple=True, requeue=True)


def post_notifications(batch):
    """POSTs up to 100 notifications to the HTTP intake; returns their ids.

    A batch is taken whole or not at all: 400 says what is wrong (nothing
    of the batch was published), 401 a wrong token, 503 that the daemon
    cannot reach RabbitMQ now. Sending the same batch again is safe."""
    request = urllib.request.Request(
        f"{API_URL.rstrip('/')}/v1/notifications",
        data=json.dumps(batch, ensure_ascii=False).encode("utf-8"),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        method="POST",
    )
    for attempt in range(1, HTTP_ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.load(response)["accepted"]
        except urllib.error.HTTPError as answer:
            if answer.code == 400:
                # Each refused notification: its place in the batch, its code
                # (the dead-letter codes), and a sentence saying what is wrong.
                refusal = json.load(answer)
                problems = "; ".join(
                    f"[{p.get('index', 0)}] {p['code']}: {p['message']}" for p in refusal["errors"]
                )
                sys.exit(f"the HTTP intake refused the batch, none of it was published: {problems}")
            if answer.code != 503 or attempt == HTTP_ATTEMPTS:
                sys.exit(f"the HTTP intake answered {answer.code}: {answer.read().decode()}")
            pause = retry_after(answer.headers.get("Retry-After"))
        except urllib.error.URLError as e:  # not reached: down, or restarting
            if attempt == HTTP_ATTEMPTS:
                sys.exit(f"cannot reach the HTTP intake at {API_URL}: {e.reason}")
            pause = attempt
        print(f"the HTTP intake is unavailable; sending the batch again in {pause} s", file=sys.stderr)
        time.sleep(pause)


def retry_after(value):
    """Retry-After in seconds (the daemon sends seconds), at most 30."""
    try:
        return min(max(int(value), 1), 30)
    except (TypeError, ValueError):
        return 1


def main(step):
    if step in ("all", "publish", "dead-letter"):
        connection = connect()
        channel = connection.channel()
        channel.confirm_delivery()
        try:
            if step in ("all", "publish"):
                good = notification(new_order())
                publish(channel, good)
                print(f"published {good['id']} to {QUEUE}")
            if step in ("all", "dead-letter"):
                bad = notification(new_order())
                bad["id"] = bad["id"].replace(":delayed", ":bad")
                del bad["customer"]["id"]  # required: the daemon dead-letters it
                publish(channel, bad)
                reason = dead_letter_reason(channel, bad["id"])
                if reason is None:
                    sys.exit(f"{bad['id']} did not reach {DEAD_LETTER_QUEUE} within {DEAD_LETTER_WAIT_S} s")
                code, sentence = reason
                print(f"dead-lettered {bad['id']}: {code}: {sentence}")
        finally:
            connection.close()
    if step in ("all", "http"):
        for accepted in post_notifications([notification(new_order())]):
            print(f"accepted {accepted} over HTTP")


if __name__ == "__main__":
    step = sys.argv[1] if len(sys.argv) > 1 else "all"
    if step not in ("all", "publish", "dead-letter", "http"):
        sys.exit(__doc__)
    try:
        main(step)
    except NotTaken as e:
        sys.exit(f"not published: {e}")
