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
    /// This round's slots per unit of weight, fixed when the rotation goes
    /// round (back to the first name): while `size` decays (a worker's
    /// first claim is its whole prefetch, the ones after it a few jobs),
    /// a quantum read at each turn would make every turn shorter than the
    /// one before, and the tenant served first in a round (by name) would
    /// get more than its weight.
    quantum: u64,
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

    /// How many tenants to pick for a claim of `want` slots: enough for a
    /// claim of any size (a turn to finish, then [`VISITS`] turns), not
    /// just this one's. The pick for the next claim rides along with this
    /// one, and the next claim may be larger: a pick of one tenant, made
    /// for a claim of one slot, would hand that tenant the whole of a
    /// larger claim after it. A claim of 0 slots (one that only tends its
    /// tenants) visits one.
    pub fn visits(want: usize) -> usize {
        if want == 0 { 1 } else { VISITS + 1 }
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
        let mut slots = vec![0usize; tenants.len()];
        let mut left = want as u64;
        let resumes = self.credit > 0 && self.cursor.as_deref() == Some(tenants[0].as_str());
        let mut i = 0;
        while left > 0 {
            let at = i % tenants.len();
            let turn = if i == 0 && resumes {
                self.credit
            } else {
                if self.starts_round(&tenants[at]) {
                    self.quantum = ((self.size / VISITS as f64).ceil() as u64).max(1);
                }
                weight(&tenants[at])
                    .clamp(1, MAX_WEIGHT)
                    .saturating_mul(self.quantum.max(1))
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

    /// Whether a new turn of `tenant` begins a round: the rotation goes in
    /// name order, so a name not after the last one served went round.
    fn starts_round(&self, tenant: &str) -> bool {
        self.cursor.as_deref().is_none_or(|last| tenant <= last)
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

    /// A worker's first claim is its whole prefetch and the claims after it
    /// a few jobs each, so the turn length decays while a round is under
    /// way: the ratio must still hold (it came out 3.2:1 when each turn
    /// read the decaying length on its own).
    #[test]
    fn weights_hold_while_the_turn_length_decays() {
        let mut r = Rotation::default();
        let tenants = names(&["acme", "beta"]);
        let weight = |t: &str| if t == "acme" { 3 } else { 1 };
        let (mut a, mut b) = (0u64, 0u64);
        let mut claims = std::iter::once(256).chain(std::iter::repeat(8));
        while a + b < 10_000 {
            let want = claims.next().unwrap();
            let order = pick(&tenants, r.start());
            for (t, n) in r.allot(&order, weight, want) {
                if t == "acme" {
                    a += n as u64;
                } else {
                    b += n as u64;
                }
            }
        }
        let ratio = a as f64 / b as f64;
        assert!((ratio - 3.0).abs() < 0.05, "{a}:{b} = {ratio:.3}");
    }

    /// Claims of 1 slot (a worker whose budget just freed one) between
    /// large ones: the pick made for a small claim serves the next claim
    /// too, and must not leave the other tenants out of it.
    #[test]
    fn weights_hold_when_small_and_large_claims_alternate() {
        let mut r = Rotation::default();
        let tenants = names(&["acme", "beta"]);
        let weight = |t: &str| if t == "acme" { 3 } else { 1 };
        let (mut a, mut b) = (0u64, 0u64);
        let mut order = pick(&tenants, r.start());
        order.truncate(Rotation::visits(1));
        for want in [1, 1, 48].into_iter().cycle().take(600) {
            for (t, n) in r.allot(&order, weight, want) {
                if t == "acme" {
                    a += n as u64;
                } else {
                    b += n as u64;
                }
            }
            // The next claim's pick rides along with this one: sized by
            // this claim, as the queue does.
            order = pick(&tenants, r.start());
            order.truncate(Rotation::visits(want));
        }
        let ratio = a as f64 / b as f64;
        assert!((ratio - 3.0).abs() < 0.05, "{a}:{b} = {ratio:.3}");
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
