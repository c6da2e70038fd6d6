//! The demo's made-up day: customers, what producers publish for them
//! (a little of it broken, as real producers' is), and the cancels that
//! arrive later. All drawn from one seed.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::{HOUR, MIN};
use crate::config::Catalog;
use crate::dev::dice::Dice;

/// The day to play.
pub struct Day {
    /// (arrival, body), in arrival order.
    pub messages: Vec<(i64, Vec<u8>)>,
    /// (notification id, when the shop cancels it), in time order.
    pub cancels: Vec<(String, i64)>,
    /// Notifications to customers who read nothing, whatever the channel.
    pub never_read: HashSet<String>,
}

/// Where a customer lives, weighted by how many live there.
const ZONES: [(&str, usize); 5] = [
    ("Europe/Moscow", 6),
    ("Europe/Kaliningrad", 1),
    ("Asia/Yekaterinburg", 1),
    ("Asia/Novosibirsk", 1),
    ("Asia/Vladivostok", 1),
];

/// Draws the day starting at `day_start` for `customers` customers.
pub fn draw(catalog: &Catalog, customers: usize, day_start: i64, dice: &mut Dice) -> Day {
    let zones: Vec<&str> = ZONES
        .iter()
        .flat_map(|(z, w)| std::iter::repeat_n(*z, *w))
        .collect();
    let policies = policies(catalog);
    let mut day = Day {
        messages: Vec::new(),
        cancels: Vec::new(),
        never_read: HashSet::new(),
    };
    for c in 0..customers {
        let customer_id = format!("c-{c:04}");
        let customer = customer(&customer_id, c, dice, &zones);
        let never_reads = dice.chance(0.15);
        // Most customers get one to three notifications over the day; a few
        // busy ones get a burst within two hours, which the limits must pace.
        let busy = dice.chance(0.05);
        let count = if busy {
            4 + dice.below(3)
        } else {
            1 + dice.below(3)
        };
        let burst_start = day_start + dice.below(22 * HOUR as u64) as i64;
        for n in 0..count {
            let policy = *dice.pick(&policies);
            let id = format!("{policy}:{customer_id}:{n}");
            let at = if busy {
                burst_start + dice.below(2 * HOUR as u64) as i64
            } else {
                day_start + dice.below(24 * HOUR as u64) as i64
            };
            let order = 1000 + c * 3 + n as usize;
            let bytes = publish(notification(&id, policy, order, &customer), dice);
            if never_reads {
                day.never_read.insert(id.clone());
            }
            if dice.chance(0.01) {
                // The producer retried after a lost ack: a duplicate id.
                let again = at + dice.below(5 * MIN as u64) as i64;
                day.messages.push((again, bytes.clone()));
            }
            if policy == "delivery_delay" && dice.chance(0.03) {
                day.cancels.push((id.clone(), at + dice.delay(2 * HOUR)));
            }
            day.messages.push((at, bytes));
        }
    }
    day.messages.sort_by_key(|(at, _)| *at);
    day.cancels.sort_by_key(|(_, at)| *at);
    day
}

/// The policies the day uses: the sample ones in a mix, or whatever is configured.
fn policies(catalog: &Catalog) -> Vec<&str> {
    let sample: Vec<&str> = ["delivery_delay"; 5]
        .into_iter()
        .chain(["order_followup"; 2])
        .chain(["order_call"; 2])
        .chain(["abandoned_cart"; 2])
        .filter(|p| catalog.policies.contains_key(*p))
        .collect();
    if sample.is_empty() {
        catalog.policies.keys().map(String::as_str).collect()
    } else {
        sample
    }
}

/// One customer, as producers describe them.
fn customer(id: &str, c: usize, dice: &mut Dice, zones: &[&str]) -> Value {
    let mut contacts = serde_json::Map::new();
    if dice.chance(0.75) {
        contacts.insert("vk".into(), json!(format!("{}", 100_000 + c)));
    }
    if dice.chance(0.97) {
        contacts.insert("sms".into(), json!(format!("+7916{:07}", c)));
    }
    if dice.chance(0.85) {
        contacts.insert("email".into(), json!(format!("customer{c}@example.ru")));
    }
    if dice.chance(0.4) {
        contacts.insert("telegram".into(), json!(format!("{}", 5_000_000 + c)));
    }
    if dice.chance(0.3) {
        contacts.insert("whatsapp".into(), json!(format!("+7916{:07}", c)));
    }
    let preferences: Vec<&str> = match dice.below(4) {
        0 => vec!["whatsapp", "telegram"],
        1 => vec!["vk"],
        _ => vec![],
    };
    let opt_out: Vec<&str> = if dice.chance(0.04) {
        vec!["sms"]
    } else {
        vec![]
    };
    json!({
        "id": id, "timezone": *dice.pick(zones), "contacts": contacts,
        "preferences": preferences, "opt_out": opt_out,
    })
}

/// A notification about order `order`, in the words of its policy.
fn notification(id: &str, policy: &str, order: usize, customer: &Value) -> Value {
    let text = match policy {
        "delivery_delay" => format!("Заказ {order} задерживается на 2 дня. Приносим извинения!"),
        "abandoned_cart" => "Вы оставили товары в корзине. Они ещё ждут вас!".to_string(),
        "order_call" => {
            format!("Заказ {order} оформлен. Менеджер позвонит, чтобы согласовать доставку.")
        }
        _ => format!("Заказ {order} оформлен. Мы позвоним, если понадобится уточнить детали."),
    };
    let sms = if policy == "delivery_delay" {
        "задержка 2 дня"
    } else {
        "подробности в письме"
    };
    json!({
        "id": id,
        "policy": policy,
        "customer": customer,
        "content": {
            "text": text,
            "subject": format!("Заказ {order}"),
            "link": format!("https://shop.example.ru/orders/{order}"),
            "channels": { "sms": { "text": format!("Заказ {order}: {sms}") } },
        },
    })
}

/// The bytes a producer publishes: now and then broken, which the daemon
/// must dead-letter, not lose.
fn publish(mut body: Value, dice: &mut Dice) -> Vec<u8> {
    match dice.below(200) {
        0 => b"{\"id\": \"broken".to_vec(),
        1 => {
            body["policy"] = json!("black_friday");
            body.to_string().into_bytes()
        }
        2 => {
            body["customer"]["contacts"] = json!({});
            body.to_string().into_bytes()
        }
        _ => body.to_string().into_bytes(),
    }
}
