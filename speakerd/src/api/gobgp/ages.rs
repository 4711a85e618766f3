//! When each owner's announcement of a prefix last changed: the paths' age in the GoBGP API.
//!
//! The speaker stamps every event of one call with the same time, so a bulk load gives all its
//! prefixes one time: the distinct times are kept once, each with how many entries use it, and an
//! entry is a prefix and the index of its time, per owner (the owner's name is held once, not once per
//! prefix). Keyed by (owner name, prefix) with the whole time in every entry, a million paths took
//! several times the memory of the announcements themselves.
use ipnet::IpNet;
use std::collections::HashMap;
use std::time::SystemTime;

#[derive(Debug, Default)]
pub struct Ages {
    /// Each time in use and how many entries use it; a slot no entry uses is in `free`.
    times: Vec<(SystemTime, u32)>,
    free: Vec<u32>,
    index: HashMap<SystemTime, u32>,
    owners: HashMap<String, HashMap<IpNet, u32>>,
}

impl Ages {
    /// `owner`'s announcement of `p` changed at `at`.
    pub fn set(&mut self, owner: &str, p: IpNet, at: SystemTime) {
        let t = self.time(at);
        let old = match self.owners.get_mut(owner) {
            Some(m) => m.insert(p, t),
            None => self.owners.entry(owner.to_string()).or_default().insert(p, t),
        };
        if let Some(old) = old {
            self.release(old);
        }
    }

    /// `owner` no longer announces `p`.
    pub fn remove(&mut self, owner: &str, p: &IpNet) {
        let Some(m) = self.owners.get_mut(owner) else { return };
        let old = m.remove(p);
        if m.is_empty() {
            self.owners.remove(owner);
        }
        if let Some(old) = old {
            self.release(old);
        }
    }

    /// When `owner`'s announcement of `p` last changed.
    pub fn get(&self, owner: &str, p: &IpNet) -> Option<SystemTime> {
        let t = *self.owners.get(owner)?.get(p)?;
        Some(self.times[t as usize].0)
    }

    /// The owners with an entry for `p`.
    pub fn owners_of(&self, p: &IpNet) -> Vec<String> {
        self.owners.iter().filter(|(_, m)| m.contains_key(p)).map(|(o, _)| o.clone()).collect()
    }

    /// The index of `at`, one more use counted.
    fn time(&mut self, at: SystemTime) -> u32 {
        if let Some(&t) = self.index.get(&at) {
            self.times[t as usize].1 += 1;
            return t;
        }
        let t = match self.free.pop() {
            Some(t) => {
                self.times[t as usize] = (at, 1);
                t
            }
            None => {
                self.times.push((at, 1));
                (self.times.len() - 1) as u32
            }
        };
        self.index.insert(at, t);
        t
    }

    /// One use of time `t` fewer; its slot is freed with the last.
    fn release(&mut self, t: u32) {
        let slot = &mut self.times[t as usize];
        slot.1 -= 1;
        if slot.1 == 0 {
            self.index.remove(&slot.0);
            self.free.push(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ages_share_their_times_and_free_them() {
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let p = |s: &str| s.parse::<IpNet>().unwrap();
        let mut a = Ages::default();
        for i in 0..10 {
            a.set("bulk", p(&format!("10.0.0.{i}/32")), t(1));
        }
        a.set("cli", p("10.0.0.1/32"), t(2));
        assert_eq!((a.times.len(), a.index.len()), (2, 2), "two distinct times");
        assert_eq!(a.get("bulk", &p("10.0.0.1/32")), Some(t(1)));
        assert_eq!(a.get("cli", &p("10.0.0.1/32")), Some(t(2)));
        assert_eq!(a.get("cli", &p("10.0.0.2/32")), None);
        let mut owners = a.owners_of(&p("10.0.0.1/32"));
        owners.sort();
        assert_eq!(owners, ["bulk", "cli"]);
        // a change moves the entry to the new time; the old time goes with its last use
        a.set("cli", p("10.0.0.1/32"), t(3));
        assert_eq!(a.get("cli", &p("10.0.0.1/32")), Some(t(3)));
        assert_eq!((a.index.len(), a.free.len()), (2, 1), "t(2) freed");
        a.set("cli", p("10.0.0.2/32"), t(4));
        assert_eq!((a.times.len(), a.free.len()), (3, 0), "its slot reused");
        for i in 0..10 {
            a.remove("bulk", &p(&format!("10.0.0.{i}/32")));
        }
        assert_eq!(a.get("bulk", &p("10.0.0.1/32")), None);
        assert!(!a.owners.contains_key("bulk"), "an owner without entries is dropped");
        assert_eq!(a.index.len(), 2, "t(1) freed");
        a.remove("nobody", &p("10.0.0.1/32"));
        a.remove("cli", &p("10.0.0.9/32"));
        assert_eq!(a.index.len(), 2);
    }
}
