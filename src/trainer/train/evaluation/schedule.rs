//! When evaluations run and how many images each scores: the full ones at the first tick past
//! each multiple of `eval.every_kimg` and at the end of training, quick ones (`eval.quick_num`
//! images) at the ticks past each multiple of `eval.quick_every_kimg` in between.
use gan_core::config::EvalSection;

/// What one evaluation scores: `num` images; `quick` between the full ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub num: u64,
    pub quick: bool,
}

/// Every `every_nimg` images; the next one due at `next_nimg`.
#[derive(Clone, Copy, Debug)]
struct Cadence {
    every_nimg: u64,
    next_nimg: u64,
}

impl Cadence {
    fn new(every_kimg: f64, cur_nimg: u64) -> Self {
        let every_nimg = (every_kimg * 1000.0).round().max(1.0) as u64;
        let mut cadence = Cadence { every_nimg, next_nimg: 0 };
        cadence.pass(cur_nimg);
        cadence
    }

    fn due(&self, cur_nimg: u64) -> bool {
        cur_nimg >= self.next_nimg
    }

    /// The next one comes at the first multiple after `cur_nimg`.
    fn pass(&mut self, cur_nimg: u64) {
        self.next_nimg = (cur_nimg / self.every_nimg + 1) * self.every_nimg;
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    full: Cadence,
    num: u64,
    /// Quick evaluations and their image count, when configured.
    quick: Option<(Cadence, u64)>,
}

impl Schedule {
    /// From a run's evaluation section (`every_kimg` > 0), for a run at `cur_nimg`.
    pub fn new(e: &EvalSection, cur_nimg: u64) -> Self {
        let quick =
            (e.quick_every_kimg > 0.0).then(|| (Cadence::new(e.quick_every_kimg, cur_nimg), e.quick_num));
        Schedule { full: Cadence::new(e.every_kimg, cur_nimg), num: e.num, quick }
    }

    /// Whether an evaluation is due at this tick (`done`: the run's last).
    pub fn due(&self, cur_nimg: u64, done: bool) -> bool {
        done || self.full.due(cur_nimg) || self.quick.is_some_and(|(cadence, _)| cadence.due(cur_nimg))
    }

    /// The evaluation due now: the full one at its multiples and at the end, else a quick one.
    /// Both cadences move past `cur_nimg`: a full evaluation stands in for a quick one.
    pub fn next(&mut self, cur_nimg: u64, done: bool) -> Request {
        let full = done || self.full.due(cur_nimg);
        if full {
            self.full.pass(cur_nimg);
        }
        let Some((cadence, quick_num)) = &mut self.quick else {
            return Request { num: self.num, quick: false };
        };
        cadence.pass(cur_nimg);
        if full {
            Request { num: self.num, quick: false }
        } else {
            Request { num: *quick_num, quick: true }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(every_kimg: f64, quick_every_kimg: f64) -> EvalSection {
        EvalSection { every_kimg, quick_every_kimg, num: 400, quick_num: 100, ..EvalSection::default() }
    }

    /// The evaluations a run with a tick every `tick_nimg` images makes from `start_nimg` to
    /// `end_nimg`.
    fn run(e: &EvalSection, start_nimg: u64, tick_nimg: u64, end_nimg: u64) -> Vec<(u64, Request)> {
        let mut schedule = Schedule::new(e, start_nimg);
        let mut out = Vec::new();
        let mut cur_nimg = start_nimg;
        while cur_nimg < end_nimg {
            cur_nimg = (cur_nimg + tick_nimg).min(end_nimg);
            let done = cur_nimg == end_nimg;
            if schedule.due(cur_nimg, done) {
                out.push((cur_nimg, schedule.next(cur_nimg, done)));
            }
        }
        out
    }

    const FULL: Request = Request { num: 400, quick: false };
    const QUICK: Request = Request { num: 100, quick: true };

    #[test]
    fn quick_evaluations_fill_the_gaps_between_full_ones() {
        let e = section(1.0, 0.25);
        let got = run(&e, 0, 250, 2000);
        let want = [
            (250, QUICK),
            (500, QUICK),
            (750, QUICK),
            (1000, FULL),
            (1250, QUICK),
            (1500, QUICK),
            (1750, QUICK),
            (2000, FULL),
        ];
        assert_eq!(got, want);
        // Ticks that miss the multiples: the first tick past each one.
        let got = run(&e, 0, 300, 1500);
        assert_eq!(got, [(300, QUICK), (600, QUICK), (900, QUICK), (1200, FULL), (1500, FULL)]);
    }

    #[test]
    fn without_quick_evaluations_only_full_ones_run() {
        let got = run(&section(0.5, 0.0), 0, 250, 1250);
        assert_eq!(got, [(500, FULL), (1000, FULL), (1250, FULL)]);
    }

    #[test]
    fn a_resumed_run_keeps_the_cadence_of_the_images_seen() {
        let got = run(&section(1.0, 0.5), 1100, 100, 2100);
        assert_eq!(got, [(1500, QUICK), (2000, FULL), (2100, FULL)]);
    }
}
