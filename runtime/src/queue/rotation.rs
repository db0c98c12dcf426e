//! A worker's turn-taking between tenants with work: deficit round-robin
//! in tenant-name order. Each tenant's turn is `weight × quantum` claim
//! slots; a turn a claim cannot finish goes on in the next claim. Every
//! worker keeps its own rotation; the queue only keeps the set of tenants
//! with work, so claims write nothing shared for fairness, and the sum of
//! fair workers is fair.

/// Where a worker's rotation stands.
#[derive(Debug, Default, Clone)]
pub(crate) struct Rotation {
    /// The tenant whose turn was last given.
    cursor: Option<String>,
    /// Slots left of that tenant's turn.
    credit: u64,
    /// The largest claim of late (decaying): turns are sized from it, not
    /// from each claim's size, so that every tenant's turn is the same
    /// length whichever claim it falls in (the ratio of weights holds).
    size: f64,
}

/// The largest weight that counts (a larger setting is taken as this): a
/// turn must fit a claim's arithmetic.
const MAX_WEIGHT: u64 = 1_000_000;

/// Most tenants one claim visits: a claim of N slots gives each turn
/// N / `VISITS` slots (at least 1), so a claim costs a few script calls
/// however many tenants have work, and turns stay short beside a claim.
const VISITS: usize = 4;

impl Rotation {
    /// Where the next pick starts: after the cursor, or at it when its
    /// turn is not over.
    pub fn start(&self) -> (&str, bool) {
        (self.cursor.as_deref().unwrap_or(""), self.credit > 0)
    }

    /// One turn of a weight-1 tenant in a claim of `want` slots: what a
    /// claim of a tenant named by a wake token takes at most, so that the
    /// ratio of weights holds to within one turn (docs/queue.md).
    pub fn one_turn(want: usize) -> usize {
        want.div_ceil(VISITS).max(1)
    }

    /// How many tenants to pick for a claim of `want` slots.
    pub fn visits(want: usize) -> usize {
        (VISITS + 1).min(want.max(1))
    }

    /// Share `want` slots between `tenants` (in rotation order from
    /// [`Rotation::start`]), turn by turn, as many rounds as it takes.
    /// Returns (tenant, slots) once per tenant given any.
    pub fn allot(
        &mut self,
        tenants: &[String],
        weight: impl Fn(&str) -> u64,
        want: usize,
    ) -> Vec<(String, usize)> {
        if tenants.is_empty() || want == 0 {
            return Vec::new();
        }
        // Decays by half a percent a claim: a worker whose jobs turn long
        // (smaller claims) gets shorter turns within a few hundred claims,
        // while claims of varying size see one turn length.
        self.size = (want as f64).max(self.size * 0.995);
        let quantum = ((self.size / VISITS as f64).ceil() as u64).max(1);
        let mut slots = vec![0usize; tenants.len()];
        let mut left = want as u64;
        let resumes = self.credit > 0 && self.cursor.as_deref() == Some(tenants[0].as_str());
        let mut i = 0;
        while left > 0 {
            let at = i % tenants.len();
            let turn = if i == 0 && resumes {
                self.credit
            } else {
                weight(&tenants[at])
                    .clamp(1, MAX_WEIGHT)
                    .saturating_mul(quantum)
            };
            let give = turn.min(left);
            slots[at] += give as usize;
            left -= give;
            self.cursor = Some(tenants[at].clone());
            self.credit = turn - give;
            i += 1;
        }
        tenants
            .iter()
            .zip(slots)
            .filter(|(_, n)| *n > 0)
            .map(|(t, n)| (t.clone(), n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn one_tenant_gets_the_whole_claim() {
        let mut r = Rotation::default();
        assert_eq!(
            r.allot(&names(&["acme"]), |_| 1, 64),
            vec![("acme".into(), 64)]
        );
    }

    /// What pick.lua returns: names from the cursor on, then round.
    fn pick(all: &[String], (cursor, inclusive): (&str, bool)) -> Vec<String> {
        let after =
            |t: &String| cursor.is_empty() || t.as_str() > cursor || inclusive && t == cursor;
        let mut order: Vec<String> = all.iter().filter(|t| after(t)).cloned().collect();
        order.extend(all.iter().filter(|t| !after(t)).cloned());
        order
    }

    #[test]
    fn weights_split_claims_three_to_one_across_claims() {
        let mut r = Rotation::default();
        let tenants = names(&["acme", "beta"]);
        let weight = |t: &str| if t == "acme" { 3 } else { 1 };
        let (mut a, mut b) = (0, 0);
        for want in (0..1000).map(|i| 1 + i % 3) {
            let order = pick(&tenants, r.start());
            for (t, n) in r.allot(&order, weight, want) {
                if t == "acme" {
                    a += n;
                } else {
                    b += n;
                }
            }
        }
        assert_eq!(a + b, 1999);
        assert!((a as f64 / b as f64 - 3.0).abs() < 0.05, "{a}:{b}");
    }

    #[test]
    fn many_tenants_take_turns_of_a_few_slots() {
        let mut r = Rotation::default();
        let tenants: Vec<String> = (0..9).map(|i| format!("t{i}")).collect();
        let got = r.allot(&tenants, |_| 1, 64);
        assert_eq!(got.len(), VISITS, "{got:?}");
        assert!(got.iter().all(|(_, n)| *n == 64 / VISITS));
        // The next claim starts after the last tenant served.
        let last = format!("t{}", VISITS - 1);
        assert_eq!(r.start(), (last.as_str(), false));
    }

    #[test]
    fn an_unfinished_turn_goes_on_in_the_next_claim() {
        let mut r = Rotation::default();
        // a's turn: weight 3 × the quantum of claims of 2.
        let turn = 3 * 2_usize.div_ceil(VISITS);
        assert_eq!(
            r.allot(&names(&["a", "b"]), |_| 3, 2),
            vec![("a".into(), 2)]
        );
        assert_eq!(r.start(), ("a", true));
        let mut given = 2;
        while given + 2 < turn {
            assert_eq!(
                r.allot(&names(&["a", "b"]), |_| 3, 2),
                vec![("a".into(), 2)]
            );
            given += 2;
        }
        // The rest of a's turn, then b's.
        let rest = turn - given;
        let mut expected = vec![("a".to_string(), rest)];
        if rest < 2 {
            expected.push(("b".to_string(), 2 - rest));
        }
        assert_eq!(r.allot(&names(&["a", "b"]), |_| 3, 2), expected);
    }
}
