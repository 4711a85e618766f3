//! A persistent client of BIRD's control socket (the protocol `birdc` speaks): one connection, one
//! command at a time, a reply ends with a line whose four-digit code is followed by a space. Much cheaper
//! than starting `birdc` for every poll, so receivers can be polled every millisecond.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

pub struct BirdCtl {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl BirdCtl {
    pub fn connect(path: &Path) -> io::Result<BirdCtl> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let s = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        let mut c = BirdCtl { r: BufReader::new(s.try_clone()?), w: s };
        c.reply()?; // "0001 BIRD x.y.z ready."
        Ok(c)
    }

    fn reply(&mut self) -> io::Result<String> {
        let mut out = String::new();
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line)? == 0 {
                return Err(io::Error::other("BIRD closed the control socket"));
            }
            let b = line.as_bytes();
            let last = b.len() >= 5 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b' ';
            out.push_str(&line);
            if last {
                return Ok(out);
            }
        }
    }

    pub fn cmd(&mut self, c: &str) -> io::Result<String> {
        self.w.write_all(c.as_bytes())?;
        self.w.write_all(b"\n")?;
        self.reply()
    }

    /// Routes imported by protocol `proto` ("Routes: N imported").
    pub fn imported(&mut self, proto: &str) -> io::Result<u64> {
        let out = self.cmd(&format!("show protocols all {proto}"))?;
        Ok(out.lines().find_map(|l| l.split("Routes:").nth(1)?.split_whitespace().next()?.parse().ok()).unwrap_or(0))
    }

    /// Import updates received by `proto` (also those an `import none` filter rejected).
    pub fn updates_received(&mut self, proto: &str) -> io::Result<u64> {
        let out = self.cmd(&format!("show protocols all {proto}"))?;
        Ok(out
            .lines()
            .find_map(|l| l.split("Import updates:").nth(1)?.split_whitespace().next()?.parse().ok())
            .unwrap_or(0))
    }

    pub fn established(&mut self, proto: &str) -> io::Result<bool> {
        Ok(self.cmd(&format!("show protocols {proto}"))?.contains("Established"))
    }

    /// Number of protocols whose state line says Established.
    pub fn established_count(&mut self) -> io::Result<usize> {
        Ok(self.cmd("show protocols")?.lines().filter(|l| l.contains("Established")).count())
    }

    /// Whether the table holds exactly the net `net` ("show route 10.0.0.1/32").
    pub fn has_route(&mut self, net: &str) -> io::Result<bool> {
        let out = self.cmd(&format!("show route {net}"))?;
        Ok(out.lines().any(|l| l.starts_with("1007")))
    }
}
