//! The latency histogram shared by the projector (which fills it) and the
//! statistics queries (which read percentiles from it).

/// Upper bounds of the latency buckets in milliseconds; one more bucket
/// holds everything above the last bound.
pub const BUCKETS_MS: [u64; 19] =
    [5, 10, 25, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000, 15000, 30000];

/// Number of buckets, including the overflow bucket.
pub const BUCKETS: usize = BUCKETS_MS.len() + 1;

/// The bucket a latency falls in.
pub fn bucket(ms: u64) -> usize {
    BUCKETS_MS.iter().position(|&b| ms <= b).unwrap_or(BUCKETS_MS.len())
}

/// The `q` quantile (0..1): the upper bound of the bucket where the
/// cumulative count reaches `q` of the total; the overflow bucket reports
/// its lower bound. 0 with no samples.
pub fn percentile(counts: &[i64], q: f64) -> u64 {
    let total: i64 = counts.iter().sum();
    if total <= 0 {
        return 0;
    }
    let rank = (q * total as f64).ceil().max(1.0) as i64;
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return BUCKETS_MS.get(i).copied().unwrap_or(*BUCKETS_MS.last().expect("buckets"));
        }
    }
    *BUCKETS_MS.last().expect("buckets")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_percentiles() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(5), 0);
        assert_eq!(bucket(6), 1);
        assert_eq!(bucket(99_999), BUCKETS - 1);
        let mut counts = vec![0i64; BUCKETS];
        counts[bucket(3)] += 90; // 90 fast
        counts[bucket(120)] += 9; // 9 at ~120 ms
        counts[bucket(2500)] += 1; // 1 slow
        assert_eq!(percentile(&counts, 0.5), 5);
        assert_eq!(percentile(&counts, 0.95), 150);
        assert_eq!(percentile(&counts, 0.99), 150);
        assert_eq!(percentile(&counts, 1.0), 3000);
        assert_eq!(percentile(&[0; BUCKETS], 0.5), 0);
    }
}
