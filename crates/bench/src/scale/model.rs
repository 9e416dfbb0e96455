//! The population of a scale run, derived from the counts alone (the same
//! counts give the same tenants, endpoints, filters and behaviours): tenants
//! across the four plans within their endpoint limits, endpoints with event
//! type filters over the twelve types, and which endpoints misbehave.

use anyhow::bail;
use hookline_domain::event_type::EventType;
use hookline_proto::subscriptions::v1::Plan;

/// What an endpoint's receiver does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Healthy,
    /// Answers 500, always (5 %).
    Failing,
    /// Accepts the connection and never answers (1 %).
    BlackHole,
    /// Answers 429 with `Retry-After` (1 %).
    Throttled,
}

pub struct Tenant {
    pub name: String,
    pub plan: Plan,
    /// Indexes into [`Model::endpoints`].
    pub endpoints: Vec<u32>,
}

pub struct Endpoint {
    pub tenant: u32,
    pub kind: Kind,
    /// Bit `i` set: subscribed to `EventType::ALL[i]`; all twelve = no filter.
    pub types: u16,
}

pub const ALL_TYPES: u16 = (1 << 12) - 1;

impl Endpoint {
    pub fn type_names(&self) -> Vec<String> {
        if self.types == ALL_TYPES {
            return Vec::new();
        }
        EventType::ALL
            .iter()
            .enumerate()
            .filter(|(i, _)| self.types & (1 << i) != 0)
            .map(|(_, t)| t.as_str().to_owned())
            .collect()
    }
}

pub struct Model {
    pub tenants: Vec<Tenant>,
    pub endpoints: Vec<Endpoint>,
}

/// A deterministic pseudo-random number for `x` (splitmix64).
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const PLANS: [(Plan, usize); 4] =
    [(Plan::Basic, 1), (Plan::Professional, 3), (Plan::Business, 5), (Plan::Enterprise, 10)];

impl Model {
    /// `tenants` tenants, a quarter on each plan, and `endpoints` endpoints
    /// dealt out one per tenant per round while a tenant's plan has room.
    pub fn new(tenants: usize, endpoints: usize) -> anyhow::Result<Self> {
        let capacity: usize = (0..tenants).map(|i| PLANS[i % 4].1).sum();
        if endpoints > capacity || tenants == 0 {
            bail!("--endpoints {endpoints}: {tenants} tenants across the four plans hold at most {capacity}");
        }
        let mut ts: Vec<Tenant> = (0..tenants)
            .map(|i| Tenant { name: format!("scale-{i}"), plan: PLANS[i % 4].0, endpoints: Vec::new() })
            .collect();
        let mut eps = Vec::with_capacity(endpoints);
        'deal: for round in 0.. {
            for (t, tenant) in ts.iter_mut().enumerate() {
                if eps.len() == endpoints {
                    break 'deal;
                }
                if round < PLANS[t % 4].1 {
                    tenant.endpoints.push(eps.len() as u32);
                    eps.push(t as u32);
                }
            }
        }
        let endpoints = eps
            .into_iter()
            .enumerate()
            .map(|(i, tenant)| {
                let r = mix(i as u64);
                let kind = match r % 100 {
                    0..5 => Kind::Failing,
                    5 => Kind::BlackHole,
                    6 => Kind::Throttled,
                    _ => Kind::Healthy,
                };
                // 30 % take every type; the rest 1 to 6 of them.
                let r = mix(r);
                let types = if r % 10 < 3 {
                    ALL_TYPES
                } else {
                    let want = 1 + (r >> 8) % 6;
                    let (mut mask, mut k) = (0u16, r);
                    while u64::from(mask.count_ones()) < want {
                        k = mix(k);
                        mask |= 1 << (k % 12);
                    }
                    mask
                };
                Endpoint { tenant, kind, types }
            })
            .collect();
        Ok(Self { tenants: ts, endpoints })
    }

    /// Deliveries an event of a random type for tenant `t` makes on
    /// average to endpoints of `kind` (among those with `enabled(kind)`).
    fn fan_out(&self, t: usize, counts: impl Fn(Kind) -> bool) -> f64 {
        let tenant = &self.tenants[t];
        tenant
            .endpoints
            .iter()
            .map(|&e| &self.endpoints[e as usize])
            .filter(|e| counts(e.kind))
            .map(|e| f64::from(e.types.count_ones()) / 12.0)
            .sum()
    }

    /// Mean deliveries per event to endpoints with `counts(kind)`, with
    /// tenants drawn by `picker`.
    pub fn mean_fan_out(&self, picker: &Picker, counts: impl Fn(Kind) -> bool + Copy) -> f64 {
        match picker {
            Picker::Uniform => {
                (0..self.tenants.len()).map(|t| self.fan_out(t, counts)).sum::<f64>() / self.tenants.len() as f64
            }
            Picker::Zipf(cdf) => {
                let mut prev = 0.0;
                cdf.iter()
                    .enumerate()
                    .map(|(t, &c)| {
                        let p = c - prev;
                        prev = c;
                        p * self.fan_out(t, counts)
                    })
                    .sum()
            }
        }
    }
}

/// How events are spread over tenants.
pub enum Picker {
    Uniform,
    /// Cumulative weights of the tenants, the `i`-th weighing 1/(i+1)^s.
    Zipf(Vec<f64>),
}

impl Picker {
    pub fn zipf(tenants: usize, s: f64) -> Self {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (0..tenants)
            .map(|i| {
                acc += 1.0 / ((i + 1) as f64).powf(s);
                acc
            })
            .collect();
        cdf.iter_mut().for_each(|c| *c /= acc);
        Picker::Zipf(cdf)
    }

    pub fn pick(&self, tenants: usize) -> usize {
        let u: f64 = rand::random();
        match self {
            Picker::Uniform => ((u * tenants as f64) as usize).min(tenants - 1),
            Picker::Zipf(cdf) => cdf.partition_point(|&c| c < u).min(tenants - 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_thousand_tenants_hold_thirty_thousand_endpoints_within_their_plans() {
        let m = Model::new(10_000, 30_000).unwrap();
        assert_eq!(m.endpoints.len(), 30_000);
        for (i, t) in m.tenants.iter().enumerate() {
            assert!(t.endpoints.len() <= PLANS[i % 4].1, "{} has too many endpoints", t.name);
            assert!(!t.endpoints.is_empty());
        }
        let bad = m.endpoints.iter().filter(|e| e.kind != Kind::Healthy).count();
        assert!((1_800..2_400).contains(&bad), "{bad} misbehaving endpoints, want about 7 %");
        assert!(Model::new(4, 20).is_err(), "four tenants hold at most 19 endpoints");
    }

    #[test]
    fn a_zipf_picker_favours_the_first_tenants() {
        let p = Picker::zipf(1_000, 1.0);
        let first = (0..10_000).filter(|_| p.pick(1_000) < 10).count();
        assert!(first > 3_000, "the first 1 % of tenants drew {first} of 10,000 events");
    }
}
