// Publishes notifications to cascade, as a backend system would.
//
//     node producer.js [all|publish|dead-letter|http]
//
// publish      one notification over RabbitMQ: persistent, JSON, confirmed
// dead-letter  a deliberately bad one, then its reason from the dead-letter queue
// http         one notification through the HTTP intake instead of RabbitMQ
// all          the three in turn (the default)
//
// Settings come from the environment; the defaults fit a local stack
// (`docker compose up`, docs/local-stack.md). See docs/producers.md.

import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

import amqp from 'amqplib';

const env = process.env;
const AMQP_URL = env.CASCADE_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672/%2f';
const QUEUE = env.CASCADE_AMQP_QUEUE ?? 'cascade.notifications';
const DEAD_LETTER_QUEUE = env.CASCADE_AMQP_DEAD_LETTER_QUEUE ?? 'cascade.dead';
const API_URL = env.CASCADE_API_URL ?? 'http://127.0.0.1:8080';
const TOKEN = env.CASCADE_RECEIPT_TOKEN ?? 'change-me';

// How long to wait for the daemon to dead-letter the bad message.
const DEAD_LETTER_WAIT_MS = 10_000;
// How often to send an HTTP batch the daemon could not take (503) or could
// not be reached for; a batch is safe to send again, its ids are idempotent.
const HTTP_ATTEMPTS = 5;

/** A `delivery_delay` notification for one order. The id is the
 * idempotency key: derive it from the event, so a retry of the same event
 * can never notify the customer twice. */
function notification(order) {
  return {
    id: `order-${order}:delayed`,
    policy: 'delivery_delay',
    customer: {
      id: 'c-42',
      timezone: 'Europe/Moscow',
      contacts: { vk: '123456789', sms: '+79161234567' },
    },
    content: {
      text: `Заказ ${order} задерживается на 2 дня`,
      link: `https://shop.example.ru/orders/${order}`,
    },
  };
}

// A made-up order number, so that every run starts new cascades (a second
// message with a known id would be taken as a duplicate).
const newOrder = () => randomUUID().replaceAll('-', '').slice(0, 10);

/** CASCADE_AMQP_URL may list a cluster's nodes, separated by commas: the
 * first that answers is used. */
async function connect() {
  const nodes = AMQP_URL.split(',').map((u) => u.trim()).filter(Boolean);
  let failure;
  for (const url of nodes) {
    try {
      return await amqp.connect(url);
    } catch (e) {
      failure = e;
    }
  }
  throw failure ?? new Error('CASCADE_AMQP_URL names no node');
}

/** Publishes one notification on a ConfirmChannel and resolves once
 * RabbitMQ confirmed it. `mandatory`: a message RabbitMQ cannot route (no
 * queue of that name) comes back as a `return` before its ack, so the ack
 * alone does not mean it was queued. */
function publish(channel, body) {
  return new Promise((resolve, reject) => {
    let returned = null;
    const onReturn = (message) => {
      if (message.properties.messageId === body.id) returned = message;
    };
    channel.on('return', onReturn);
    channel.publish(
      '', // the default exchange: the routing key is the queue's name
      QUEUE,
      Buffer.from(JSON.stringify(body), 'utf8'),
      {
        contentType: 'application/json',
        persistent: true,
        messageId: body.id,
        mandatory: true,
      },
      (nacked) => {
        channel.off('return', onReturn);
        if (nacked) reject(new Error(`RabbitMQ refused ${body.id}`));
        else if (returned) {
          reject(new Error(`no queue ${QUEUE} to route ${body.id} to (the daemon declares it when it starts)`));
        } else resolve();
      },
    );
  });
}

/** Waits for the message `messageId` in the dead-letter queue and returns
 * { code, sentence } from its headers, or null.
 *
 * Takes the queue's messages one by one without acknowledging them,
 * acknowledges (removes) only ours, and hands every other one back as it
 * was. Operators read this queue with `cascade dead list` and `show`. */
async function deadLetterReason(channel, messageId) {
  const deadline = Date.now() + DEAD_LETTER_WAIT_MS;
  let held = null; // the last of someone else's messages in hand
  try {
    while (Date.now() < deadline) {
      const message = await channel.get(DEAD_LETTER_QUEUE, { noAck: false });
      if (!message) {
        await sleep(100);
      } else if (message.properties.messageId === messageId) {
        channel.ack(message);
        const headers = message.properties.headers ?? {};
        return { code: headers['x-cascade-error-code'], sentence: headers['x-cascade-error'] };
      } else {
        held = message;
      }
    }
    return null;
  } finally {
    if (held) channel.nack(held, true, true);
  }
}

/** POSTs up to 100 notifications to the HTTP intake; returns their ids.
 *
 * A batch is taken whole or not at all: 400 says what is wrong (nothing of
 * the batch was published), 401 a wrong token, 503 that the daemon cannot
 * reach RabbitMQ now. Sending the same batch again is safe. */
async function postNotifications(batch) {
  const url = `${API_URL.replace(/\/+$/, '')}/v1/notifications`;
  for (let attempt = 1; ; attempt++) {
    let pause;
    try {
      const response = await fetch(url, {
        method: 'POST',
        headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
        body: JSON.stringify(batch),
        signal: AbortSignal.timeout(10_000),
      });
      if (response.status === 202) return (await response.json()).accepted;
      if (response.status === 400) {
        // Each refused notification: its place in the batch, its code (the
        // dead-letter codes), and a sentence saying what is wrong.
        const { errors } = await response.json();
        const problems = errors.map((p) => `[${p.index ?? 0}] ${p.code}: ${p.message}`).join('; ');
        throw new Error(`the HTTP intake refused the batch, none of it was published: ${problems}`);
      }
      if (response.status !== 503 || attempt === HTTP_ATTEMPTS) {
        throw new Error(`the HTTP intake answered ${response.status}: ${await response.text()}`);
      }
      pause = retryAfter(response.headers.get('Retry-After'));
    } catch (e) {
      // fetch throws a TypeError when the daemon cannot be reached.
      if (!(e instanceof TypeError)) throw e;
      if (attempt === HTTP_ATTEMPTS) {
        throw new Error(`cannot reach the HTTP intake at ${API_URL}: ${e.cause?.message ?? e.message}`);
      }
      pause = attempt;
    }
    console.error(`the HTTP intake is unavailable; sending the batch again in ${pause} s`);
    await sleep(pause * 1000);
  }
}

/** Retry-After in seconds (the daemon sends seconds), at most 30. */
function retryAfter(value) {
  const seconds = Number.parseInt(value ?? '', 10);
  return Number.isNaN(seconds) ? 1 : Math.min(Math.max(seconds, 1), 30);
}

async function main(step) {
  const all = step === 'all';
  if (all || step === 'publish' || step === 'dead-letter') {
    const connection = await connect();
    const channel = await connection.createConfirmChannel();
    try {
      if (all || step === 'publish') {
        const good = notification(newOrder());
        await publish(channel, good);
        console.log(`published ${good.id} to ${QUEUE}`);
      }
      if (all || step === 'dead-letter') {
        const bad = notification(newOrder());
        bad.id = bad.id.replace(':delayed', ':bad');
        delete bad.customer.id; // required: the daemon dead-letters it
        await publish(channel, bad);
        const reason = await deadLetterReason(channel, bad.id);
        if (!reason) {
          throw new Error(`${bad.id} did not reach ${DEAD_LETTER_QUEUE} within ${DEAD_LETTER_WAIT_MS / 1000} s`);
        }
        console.log(`dead-lettered ${bad.id}: ${reason.code}: ${reason.sentence}`);
      }
    } finally {
      // The channel first: RabbitMQ answers its close only after applying
      // the acks and nacks sent on it, which a bare connection close may
      // drop (the messages would go back to the queue).
      await channel.close().catch(() => {});
      await connection.close();
    }
  }
  if (all || step === 'http') {
    for (const id of await postNotifications([notification(newOrder())])) {
      console.log(`accepted ${id} over HTTP`);
    }
  }
}

const step = process.argv[2] ?? 'all';
if (!['all', 'publish', 'dead-letter', 'http'].includes(step)) {
  console.error('usage: node producer.js [all|publish|dead-letter|http]');
  process.exit(2);
}
try {
  await main(step);
} catch (e) {
  console.error(`error: ${e.message}`);
  process.exitCode = 1;
}
