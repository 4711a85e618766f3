//! A scripted BGP peer over real TCP, with messages built by hand (independently of speakerd's codec),
//! and helpers to watch a peer's state through the API.
use speaker_api::v1 as pb;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub fn msg(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    m.push(ty);
    m.extend_from_slice(body);
    m
}

/// OPEN with MP IPv4+IPv6 and 4-octet AS capabilities.
pub fn open_with(version: u8, asn: u32, hold: u16, id: [u8; 4]) -> Vec<u8> {
    let my_as = if asn > 65535 { 23456u16 } else { asn as u16 };
    let mut caps = vec![];
    caps.extend_from_slice(&[2, 6, 1, 4, 0, 1, 0, 1]); // MP IPv4 unicast
    caps.extend_from_slice(&[2, 6, 1, 4, 0, 2, 0, 1]); // MP IPv6 unicast
    caps.extend_from_slice(&[2, 6, 65, 4]);
    caps.extend_from_slice(&asn.to_be_bytes());
    let mut b = vec![version];
    b.extend_from_slice(&my_as.to_be_bytes());
    b.extend_from_slice(&hold.to_be_bytes());
    b.extend_from_slice(&id);
    b.push(caps.len() as u8);
    b.extend_from_slice(&caps);
    msg(1, &b)
}

pub const KEEPALIVE: [u8; 19] =
    [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 19, 4];

pub fn update(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut b = (withdrawn.len() as u16).to_be_bytes().to_vec();
    b.extend_from_slice(withdrawn);
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri);
    msg(2, &b)
}

/// ORIGIN IGP, AS_PATH [asn] (4-octet), NEXT_HOP.
pub fn good_attrs(asn: u32, nh: [u8; 4]) -> Vec<u8> {
    let mut a = vec![0x40, 1, 1, 0];
    a.extend_from_slice(&[0x40, 2, 6, 2, 1]);
    a.extend_from_slice(&asn.to_be_bytes());
    a.extend_from_slice(&[0x40, 3, 4]);
    a.extend_from_slice(&nh);
    a
}

pub struct RawPeer {
    pub s: TcpStream,
    buf: Vec<u8>,
}

#[derive(Debug, PartialEq)]
pub enum Got {
    Open,
    Keepalive,
    Update(Vec<u8>),
    Notification(u8, u8, Vec<u8>),
    Closed,
}

impl RawPeer {
    pub fn connect(from: Ipv4Addr, to: SocketAddr) -> RawPeer {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.bind(&SocketAddr::from((from, 0)).into()).unwrap();
        sock.connect_timeout(&to.into(), Duration::from_secs(5)).unwrap();
        let s: TcpStream = sock.into();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        RawPeer { s, buf: Vec::new() }
    }

    pub fn send(&mut self, b: &[u8]) {
        self.s.write_all(b).unwrap();
    }

    pub fn recv(&mut self) -> Got {
        loop {
            if self.buf.len() >= 19 {
                let len = usize::from(u16::from_be_bytes([self.buf[16], self.buf[17]]));
                if self.buf.len() >= len {
                    let m: Vec<u8> = self.buf.drain(..len).collect();
                    return match m[18] {
                        1 => Got::Open,
                        2 => Got::Update(m[19..].to_vec()),
                        3 => Got::Notification(m[19], m[20], m[21..].to_vec()),
                        4 => Got::Keepalive,
                        t => panic!("unexpected message type {t}"),
                    };
                }
            }
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) => return Got::Closed,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Got::Closed,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// The next message that is not a KEEPALIVE or UPDATE.
    pub fn recv_notification(&mut self) -> Got {
        loop {
            match self.recv() {
                Got::Keepalive | Got::Update(_) | Got::Open => continue,
                g => return g,
            }
        }
    }

    /// OPEN exchange and first KEEPALIVE: the session is Established on both sides.
    pub fn establish(from: Ipv4Addr, to: SocketAddr, asn: u32) -> RawPeer {
        let mut p = RawPeer::connect(from, to);
        p.send(&open_with(4, asn, 90, from.octets()));
        assert_eq!(p.recv(), Got::Open);
        assert_eq!(p.recv(), Got::Keepalive);
        p.send(&KEEPALIVE);
        p
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub async fn add_passive(
    c: &mut speaker_api::v1::speaker_client::SpeakerClient<tonic::transport::Channel>,
    addr: &str,
    asn: u32,
) {
    let p = pb::PeerConfig { address: addr.into(), peer_asn: asn, passive: true, ..Default::default() };
    c.add_peer(pb::AddPeerRequest { peer: Some(p) }).await.unwrap();
}

pub async fn state(
    c: &mut speaker_api::v1::speaker_client::SpeakerClient<tonic::transport::Channel>,
    addr: &str,
) -> pb::PeerState {
    c.get_peer(pb::GetPeerRequest { peer: addr.into() }).await.unwrap().into_inner().peer.unwrap().state.unwrap()
}

pub async fn wait_state(
    c: &mut speaker_api::v1::speaker_client::SpeakerClient<tonic::transport::Channel>,
    addr: &str,
    what: &str,
    f: impl Fn(&pb::PeerState) -> bool,
) -> pb::PeerState {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = state(c, addr).await;
        if f(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{addr}: {what}; last state {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
