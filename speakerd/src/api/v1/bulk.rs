//! `SetAnnouncements` and `Announce` decoded in place.
//!
//! The generated service decodes a request into `Vec<Announcement>` (strings and vectors per entry),
//! the handler validated that into a `Vec<AdvertSpec>`, and the speaker built its set from that: three
//! copies of a bulk load alive at once, several times the size of the set that stays. Here the two
//! methods are routed to handlers that keep the request as the bytes that arrived and read one
//! `Announcement` at a time from them, validating it and handing it to the speaker, which interns it
//! into the owner's new set at once. What a client sees is unchanged: the same wire format, limits,
//! status codes and messages (`speakerd/tests/api.rs` checks them through both paths).
use super::{invalid, MAX_ANNOUNCEMENTS_PER_CALL};
use crate::config::spec::{parse_owner, AdvertSpec, ConfigError};
use crate::mem::release_after_bulk;
use crate::speaker::Speaker;
use bytes::{Buf, Bytes};
use prost::Message;
use speaker_api::v1 as pb;
use std::pin::Pin;
use std::sync::Arc;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Request, Response, Status};

/// The request as it arrived: `owner` (field 1) and the `announcements` (field 2) still encoded. Both
/// `AnnounceRequest` and `SetAnnouncementsRequest` have this layout.
#[derive(Debug, Clone, Default)]
pub struct Raw {
    bytes: Bytes,
}

/// Reads the next field of a protobuf message: (field number, wire type, the bytes of a
/// length-delimited value). Other wire types are skipped over and given with an empty value.
fn next_field(buf: &mut Bytes) -> Result<(u32, u8, Bytes), Status> {
    let bad = |what: &str| Status::internal(format!("failed to decode Protobuf message: {what}"));
    let key = prost::encoding::decode_varint(buf).map_err(|e| bad(&e.to_string()))?;
    let (field, wire) = ((key >> 3) as u32, (key & 7) as u8);
    if field == 0 {
        return Err(bad("invalid field number 0"));
    }
    let value = match wire {
        0 => {
            prost::encoding::decode_varint(buf).map_err(|e| bad(&e.to_string()))?;
            Bytes::new()
        }
        1 | 5 => {
            let n = if wire == 1 { 8 } else { 4 };
            if buf.remaining() < n {
                return Err(bad("buffer underflow"));
            }
            buf.advance(n);
            Bytes::new()
        }
        2 => {
            let len = prost::encoding::decode_varint(buf).map_err(|e| bad(&e.to_string()))?;
            if len > buf.remaining() as u64 {
                return Err(bad("buffer underflow"));
            }
            buf.split_to(len as usize)
        }
        w => return Err(bad(&format!("invalid wire type value: {w}"))),
    };
    Ok((field, wire, value))
}

impl Raw {
    /// The owner (the last `owner` field, as protobuf's rule for a repeated scalar is) and the number of
    /// announcements; checks that the whole message parses at this level.
    fn scan(&self) -> Result<(String, usize), Status> {
        let mut buf = self.bytes.clone();
        let (mut owner, mut n) = (Bytes::new(), 0usize);
        while buf.has_remaining() {
            match next_field(&mut buf)? {
                (1, 2, v) => owner = v,
                (2, 2, _) => n += 1,
                (1 | 2, _, _) => return Err(Status::internal("failed to decode Protobuf message: invalid wire type")),
                _ => {}
            }
        }
        let owner = String::from_utf8(owner.to_vec()).map_err(|_| {
            Status::internal("failed to decode Protobuf message: invalid string value: data is not UTF-8 encoded")
        })?;
        Ok((owner, n))
    }

    /// Each announcement, decoded and validated as it is read. The iterator owns the request's bytes, so
    /// they are freed as soon as the speaker is done reading it, before it exports and the sessions
    /// encode what changed.
    fn announcements(self) -> impl Iterator<Item = Result<AdvertSpec, ConfigError>> + Send + 'static {
        let mut buf = self.bytes;
        let mut i = 0usize;
        std::iter::from_fn(move || {
            while buf.has_remaining() {
                // `scan` has read the message already: a field that does not parse cannot come here.
                let Ok((field, _, value)) = next_field(&mut buf) else { return None };
                if field != 2 {
                    continue;
                }
                let at = i;
                i += 1;
                return Some(match pb::Announcement::decode(value) {
                    Ok(a) => AdvertSpec::try_from((at, &a)),
                    Err(e) => Err(ConfigError::new(format!("announcements[{at}]"), e.to_string())),
                });
            }
            None
        })
    }
}

/// Decodes a request into [`Raw`] (one copy of its bytes) and encodes the reply with prost.
#[derive(Debug, Clone)]
struct RawCodec<R>(std::marker::PhantomData<R>);

impl<R> Default for RawCodec<R> {
    fn default() -> Self {
        RawCodec(std::marker::PhantomData)
    }
}

struct RawDecoder;
struct ReplyEncoder<R>(std::marker::PhantomData<R>);

impl Decoder for RawDecoder {
    type Item = Raw;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Raw>, Status> {
        Ok(Some(Raw { bytes: src.copy_to_bytes(src.remaining()) }))
    }
}

impl<R: Message> Encoder for ReplyEncoder<R> {
    type Item = R;
    type Error = Status;
    fn encode(&mut self, item: R, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst).map_err(|e| Status::internal(e.to_string()))
    }
}

impl<R: Message + Send + 'static> Codec for RawCodec<R> {
    type Encode = R;
    type Decode = Raw;
    type Encoder = ReplyEncoder<R>;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> Self::Encoder {
        ReplyEncoder(std::marker::PhantomData)
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

/// `SetAnnouncements` from a [`Raw`] request.
pub async fn set_announcements(speaker: &Speaker, r: Raw) -> Result<pb::SetAnnouncementsResponse, Status> {
    let (owner, n) = r.scan()?;
    let owner = parse_owner(&owner).map_err(invalid)?;
    check_count(n)?;
    let (added, changed, removed) = speaker.set_announcements_from(&owner, r.announcements()).await?;
    // what was freed: the request, and whatever the changes replaced (a large set emptied by a small
    // request frees as much as a large request does)
    release_after_bulk(n.max((added + changed + removed) as usize));
    Ok(pb::SetAnnouncementsResponse { added, changed, removed })
}

/// `Announce` from a [`Raw`] request.
pub async fn announce(speaker: &Speaker, r: Raw) -> Result<pb::AnnounceResponse, Status> {
    let (owner, n) = r.scan()?;
    let owner = parse_owner(&owner).map_err(invalid)?;
    check_count(n)?;
    speaker.announce_from(&owner, r.announcements()).await?;
    release_after_bulk(n);
    Ok(pb::AnnounceResponse {})
}

fn check_count(n: usize) -> Result<(), Status> {
    if n > MAX_ANNOUNCEMENTS_PER_CALL {
        return Err(Status::resource_exhausted(format!(
            "{n} announcements in one call: at most {MAX_ANNOUNCEMENTS_PER_CALL}"
        )));
    }
    Ok(())
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// One of the two methods as a tonic unary service over [`Raw`].
#[derive(Clone)]
struct Method {
    speaker: Arc<Speaker>,
    set: bool,
}

impl tonic::server::UnaryService<Raw> for Method {
    type Response = Reply;
    type Future = BoxFuture<Result<Response<Reply>, Status>>;
    fn call(&mut self, r: Request<Raw>) -> Self::Future {
        let (speaker, set) = (self.speaker.clone(), self.set);
        Box::pin(async move {
            let raw = r.into_inner();
            let reply = if set {
                Reply::Set(set_announcements(&speaker, raw).await?)
            } else {
                Reply::Announce(announce(&speaker, raw).await?)
            };
            Ok(Response::new(reply))
        })
    }
}

/// The reply of either method.
#[derive(Clone, PartialEq)]
enum Reply {
    Set(pb::SetAnnouncementsResponse),
    Announce(pb::AnnounceResponse),
}

impl Message for Reply {
    fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
        match self {
            Reply::Set(m) => m.encode_raw(buf),
            Reply::Announce(m) => m.encode_raw(buf),
        }
    }
    // A reply is only encoded; were one decoded, its fields would be skipped.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }
    fn encoded_len(&self) -> usize {
        match self {
            Reply::Set(m) => m.encoded_len(),
            Reply::Announce(m) => m.encoded_len(),
        }
    }
    fn clear(&mut self) {}
}

impl Default for Reply {
    fn default() -> Self {
        Reply::Announce(pb::AnnounceResponse {})
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Set(m) => m.fmt(f),
            Reply::Announce(m) => m.fmt(f),
        }
    }
}

/// The Speaker service with `SetAnnouncements` and `Announce` decoded in place; every other method
/// goes to the generated service `S`, whose size limit the two share.
#[derive(Clone)]
pub struct InPlace<S> {
    inner: S,
    speaker: Arc<Speaker>,
    max_decoding: usize,
}

impl<S> InPlace<S> {
    pub fn new(inner: S, speaker: Arc<Speaker>, max_decoding: usize) -> Self {
        InPlace { inner, speaker, max_decoding }
    }
}

impl<S> tonic::server::NamedService for InPlace<S> {
    const NAME: &'static str = "speaker.v1.Speaker";
}

impl<S, B> tower::Service<tonic::codegen::http::Request<B>> for InPlace<S>
where
    S: tower::Service<
            tonic::codegen::http::Request<B>,
            Response = tonic::codegen::http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + Send,
    S::Future: Send + 'static,
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: tonic::codegen::http::Request<B>) -> Self::Future {
        let set = match req.uri().path() {
            "/speaker.v1.Speaker/SetAnnouncements" => true,
            "/speaker.v1.Speaker/Announce" => false,
            _ => return Box::pin(self.inner.call(req)),
        };
        let method = Method { speaker: self.speaker.clone(), set };
        let max = self.max_decoding;
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(RawCodec::<Reply>::default()).apply_max_message_size_config(Some(max), None);
            Ok(grpc.unary(method, req).await)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw<M: Message>(m: &M) -> Raw {
        Raw { bytes: Bytes::from(m.encode_to_vec()) }
    }

    /// The in-place reading gives what prost's decoding of the whole request gives, field order and
    /// unknown fields included.
    #[test]
    fn in_place_reading_matches_the_generated_decoding() {
        let ann = |p: &str, c: &[&str]| pb::Announcement {
            prefix: p.into(),
            communities: c.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let req = pb::SetAnnouncementsRequest {
            owner: "k8s-bridge".into(),
            announcements: vec![
                ann("192.0.2.1/32", &["65000:1"]),
                ann("2001:db8::1/128", &[]),
                ann("192.0.2.1/32", &[]),
            ],
        };
        let r = raw(&req);
        assert_eq!(r.scan().unwrap(), ("k8s-bridge".to_string(), 3));
        let got: Vec<AdvertSpec> = r.announcements().collect::<Result<_, _>>().unwrap();
        let want: Vec<AdvertSpec> =
            req.announcements.iter().enumerate().map(|(i, a)| AdvertSpec::try_from((i, a)).unwrap()).collect();
        assert_eq!(got, want);

        // Owner after the announcements, twice (the last wins), and an unknown field of each wire type.
        let mut bytes = req.announcements[0].encode_length_delimited_to_vec();
        bytes.insert(0, 0x12); // field 2, length-delimited
        let mut extra = Vec::new();
        prost::encoding::string::encode(1, &"first".to_string(), &mut extra);
        prost::encoding::uint32::encode(9, &7, &mut extra);
        prost::encoding::fixed64::encode(10, &7, &mut extra);
        prost::encoding::fixed32::encode(11, &7, &mut extra);
        prost::encoding::string::encode(12, &"x".to_string(), &mut extra);
        prost::encoding::string::encode(1, &"second".to_string(), &mut extra);
        bytes.extend(extra);
        let r = Raw { bytes: Bytes::from(bytes.clone()) };
        let generated = pb::SetAnnouncementsRequest::decode(&bytes[..]).unwrap();
        assert_eq!(r.scan().unwrap(), (generated.owner.clone(), generated.announcements.len()));
        assert_eq!(generated.owner, "second");
        assert_eq!(r.announcements().count(), 1);
    }

    /// Broken input is refused as the generated decoder refuses it (an error, never a panic), and a bad
    /// announcement names its index.
    #[test]
    fn broken_input_is_an_error() {
        let cases: &[&[u8]] = &[
            &[0x12, 0x05, 0x0a],       // announcement longer than the message
            &[0x0a, 0x02, 0xff, 0xfe], // owner not UTF-8
            &[0x08],                   // varint cut short
            &[0x00, 0x01],             // field 0
            &[0x0b],                   // start group (wire type 3)
            &[0x10, 0x01],             // field 2 as a varint
        ];
        for c in cases {
            let r = Raw { bytes: Bytes::copy_from_slice(c) };
            assert!(r.scan().is_err(), "{c:?} accepted");
            assert!(pb::SetAnnouncementsRequest::decode(*c).is_err(), "{c:?}: prost accepts it");
        }
        let req = pb::SetAnnouncementsRequest {
            owner: "o".into(),
            announcements: vec![
                pb::Announcement { prefix: "192.0.2.1/32".into(), ..Default::default() },
                pb::Announcement { prefix: "192.0.2.1/33".into(), ..Default::default() },
            ],
        };
        let errs: Vec<_> = raw(&req).announcements().filter_map(Result::err).collect();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].field.starts_with("announcements[1]"), "{errs:?}");
    }
}
