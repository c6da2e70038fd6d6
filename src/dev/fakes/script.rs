//! What a fake answers to the next sends: a queue of scripted outcomes, then
//! success, or (for `demo`) an answer drawn at random for each send. Shared
//! by every provider fake.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::dev::dice::Dice;

/// One scripted answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Scripted {
    /// Accept the message.
    Ok,
    /// A transient provider error (5xx or the provider's "try later" code).
    Transient,
    /// A rate-limit answer with this retry-after.
    RateLimited(Duration),
    /// A permanent error for this recipient (invalid number, blocked bot).
    Permanent,
    /// A configuration error (bad token, no funds).
    Misconfigured,
    /// Accept the message but answer only after this long (to provoke a
    /// client timeout after the request went out).
    Slow(Duration),
}

/// A shared, scriptable queue of answers.
#[derive(Clone, Default)]
pub struct Script(Arc<Mutex<Answers>>);

#[derive(Default)]
struct Answers {
    queue: VecDeque<Scripted>,
    /// Once the queue is used up: answers drawn with these odds.
    odds: Option<Odds>,
}

/// A provider that misbehaves now and then, as real ones do.
struct Odds {
    /// The same seed gives the same answers in turn.
    dice: Dice,
    answers: Vec<(Scripted, f64)>,
}

impl Odds {
    fn draw(&mut self) -> Scripted {
        let mut u = self.dice.unit();
        for (answer, p) in &self.answers {
            if u < *p {
                return answer.clone();
            }
            u -= p;
        }
        Scripted::Ok
    }
}

impl Script {
    /// Queues `n` copies of an answer.
    pub fn then(&self, answer: Scripted, n: usize) -> &Self {
        if let Ok(mut a) = self.0.lock() {
            a.queue.extend(std::iter::repeat_n(answer, n));
        }
        self
    }

    /// After the queue: each answer with its probability, success otherwise.
    pub fn at_random(&self, seed: u64, answers: Vec<(Scripted, f64)>) -> &Self {
        if let Ok(mut a) = self.0.lock() {
            a.odds = Some(Odds {
                dice: Dice(seed),
                answers,
            });
        }
        self
    }

    /// The next answer (success once the script is used up).
    pub fn next(&self) -> Scripted {
        let Ok(mut a) = self.0.lock() else {
            return Scripted::Ok;
        };
        match a.queue.pop_front() {
            Some(answer) => answer,
            None => a.odds.as_mut().map_or(Scripted::Ok, Odds::draw),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_answers_follow_their_odds_and_the_seed() {
        let draw = |seed| {
            let script = Script::default();
            script.then(Scripted::Misconfigured, 1);
            script.at_random(
                seed,
                vec![(Scripted::Transient, 0.1), (Scripted::Permanent, 0.2)],
            );
            (0..10_001).map(|_| script.next()).collect::<Vec<_>>()
        };
        let answers = draw(7);
        assert_eq!(answers[0], Scripted::Misconfigured, "the queue comes first");
        let count = |a: &Scripted| answers[1..].iter().filter(|x| *x == a).count();
        assert!((800..1200).contains(&count(&Scripted::Transient)));
        assert!((1700..2300).contains(&count(&Scripted::Permanent)));
        assert!((6500..7500).contains(&count(&Scripted::Ok)));
        assert_eq!(draw(7), answers);
        assert_ne!(draw(8), answers);
    }
}
