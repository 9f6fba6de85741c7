//! Address range arithmetic over ordered, disjoint `[start, end)` lists
//! (inherited copy-on-write ranges, `Mm::inherited`).

/// The parts of `ranges` inside (`inside`) or outside every range of
/// `by` (both ordered, `by` not overlapping).
pub fn clip(ranges: &[(u64, u64)], by: &[(u64, u64)], inside: bool) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(s, e) in ranges {
        let mut at = s;
        for &(bs, be) in by {
            if be <= at || bs >= e {
                continue;
            }
            let (is, ie) = (bs.max(at), be.min(e));
            if !inside && is > at {
                out.push((at, is));
            }
            if inside {
                out.push((is, ie));
            }
            at = ie;
        }
        if !inside && at < e {
            out.push((at, e));
        }
    }
    out
}

/// Merges ranges into an ordered list of disjoint ones.
pub fn union(mut r: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    r.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in r {
        match out.last_mut() {
            Some(l) if s <= l.1 => l.1 = l.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The ranges of `a` that are in none of `b` (both ordered and disjoint).
pub fn subtract(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(s, e) in a {
        let mut at = s;
        for &(bs, be) in b {
            if be <= at || bs >= e {
                continue;
            }
            if bs > at {
                out.push((at, bs));
            }
            at = at.max(be);
        }
        if at < e {
            out.push((at, e));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_inside_and_outside() {
        let r = [(0, 100), (200, 300)];
        let by = [(50, 60), (90, 250)];
        assert_eq!(clip(&r, &by, true), vec![(50, 60), (90, 100), (200, 250)]);
        assert_eq!(clip(&r, &by, false), vec![(0, 50), (60, 90), (250, 300)]);
        assert_eq!(clip(&r, &[], false), r.to_vec());
        assert!(clip(&r, &[], true).is_empty());
    }

    #[test]
    fn union_merges() {
        assert_eq!(
            union(vec![(5, 8), (0, 2), (2, 3), (7, 9)]),
            vec![(0, 3), (5, 9)]
        );
    }

    #[test]
    fn subtract_ranges() {
        assert_eq!(
            subtract(&[(0, 10), (20, 30)], &[(2, 4), (8, 22)]),
            vec![(0, 2), (4, 8), (22, 30)]
        );
        assert_eq!(subtract(&[(0, 10)], &[]), vec![(0, 10)]);
        assert!(subtract(&[(0, 10)], &[(0, 10)]).is_empty());
    }
}
