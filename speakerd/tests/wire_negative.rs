//! Negative vectors for the BGP wire codec: one malformation class per test.
//!
//! Each test builds the smallest message that shows the malformation and checks the codec's answer:
//! - for errors that reset the session, the exact [`WireError`] and the NOTIFICATION it becomes (code, subcode,
//!   data, and the bytes on the wire);
//! - for the non-fatal classes of RFC 7606, the exact [`AttrFault`] (code, verdict, error) in `Update::faults`,
//!   and whether the UPDATE's routes are then treated as withdrawn.
//!
//! Section numbers in the test comments are the RFC sentences that fix the expected answer.
use speakerd::bgp::wire::iana::{attr as code, err, flag};
use speakerd::bgp::wire::{
    decode, frame, to_bytes, AttrFault, DecodeCtx, Message, Notification, Update, Verdict, WireError, MAX_MESSAGE_LEN,
};
use std::net::Ipv4Addr;

// ---------------------------------------------------------------------------------------------------------------
// Builders

const EBGP: DecodeCtx = DecodeCtx { four_octet_as: true, ibgp: false };
const IBGP: DecodeCtx = DecodeCtx { four_octet_as: true, ibgp: true };

/// A whole message: marker, length, type, body.
fn msg(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&u16::try_from(19 + body.len()).expect("test message fits").to_be_bytes());
    m.push(ty);
    m.extend_from_slice(body);
    m
}

/// One attribute (flags, type code, 1-octet length, value); the Extended Length bit gives a 2-octet length.
fn attr(flags: u8, code: u8, value: &[u8]) -> Vec<u8> {
    let mut a = vec![flags, code];
    if flags & flag::EXTENDED_LENGTH != 0 {
        a.extend_from_slice(&u16::try_from(value.len()).expect("fits").to_be_bytes());
    } else {
        a.push(u8::try_from(value.len()).expect("fits"));
    }
    a.extend_from_slice(value);
    a
}

/// An UPDATE body from its three fields (lengths computed).
fn update_body(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&u16::try_from(withdrawn.len()).expect("fits").to_be_bytes());
    b.extend_from_slice(withdrawn);
    b.extend_from_slice(&u16::try_from(attrs.len()).expect("fits").to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri);
    b
}

fn update(attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    msg(2, &update_body(&[], attrs, nlri))
}

const WK: u8 = flag::TRANSITIVE; // well-known: Optional 0, Transitive 1
const OPT: u8 = flag::OPTIONAL;
const OPT_T: u8 = flag::OPTIONAL | flag::TRANSITIVE;

fn origin_igp() -> Vec<u8> {
    attr(WK, code::ORIGIN, &[0])
}
/// AS_PATH: one AS_SEQUENCE of 4-octet ASNs.
fn as_path(asns: &[u32]) -> Vec<u8> {
    let mut v = vec![2, u8::try_from(asns.len()).expect("fits")];
    for a in asns {
        v.extend_from_slice(&a.to_be_bytes());
    }
    attr(WK, code::AS_PATH, &v)
}
fn next_hop() -> Vec<u8> {
    attr(WK, code::NEXT_HOP, &[192, 0, 2, 1])
}
/// ORIGIN, AS_PATH, NEXT_HOP: what an eBGP UPDATE with NLRI must carry.
fn mandatory() -> Vec<u8> {
    [origin_igp(), as_path(&[65001]), next_hop()].concat()
}
fn local_pref(v: u32) -> Vec<u8> {
    attr(WK, code::LOCAL_PREF, &v.to_be_bytes())
}
/// 198.51.100.0/24 in NLRI form.
const NLRI: &[u8] = &[24, 198, 51, 100];

/// A legal MP_REACH_NLRI for IPv6 unicast: next hop 2001:db8::1, prefix 2001:db8:100::/48.
fn mp_reach_v6() -> Vec<u8> {
    let mut v = vec![0, 2, 1, 16];
    v.extend_from_slice(&"2001:db8::1".parse::<std::net::Ipv6Addr>().expect("addr").octets());
    v.push(0);
    v.extend_from_slice(&[48, 0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00]);
    attr(OPT, code::MP_REACH_NLRI, &v)
}

fn decode_update(m: &[u8], ctx: &DecodeCtx) -> Update {
    match decode(m, ctx) {
        Ok(Message::Update(u)) => u,
        other => panic!("expected an UPDATE, got {other:?}"),
    }
}

/// Checks the NOTIFICATION an error becomes, as a value and as bytes on the wire.
fn assert_notification(e: &WireError, code: u8, subcode: u8, data: &[u8]) {
    let n = e.notification();
    assert_eq!(n, Notification::new(code, subcode, data.to_vec()), "NOTIFICATION for {e:?}");
    let mut body = vec![code, subcode];
    body.extend_from_slice(data);
    let bytes = to_bytes(&Message::Notification(n), true).expect("notification encodes");
    assert_eq!(bytes.as_ref(), msg(3, &body).as_slice(), "NOTIFICATION bytes for {e:?}");
}

/// The one fault of an UPDATE, checked completely.
fn assert_single_fault(u: &Update, expected: AttrFault) {
    assert_eq!(u.faults, vec![expected], "faults of {u:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// Message header (RFC 4271 §6.1)

#[test]
fn bad_marker_is_connection_not_synchronized() {
    let mut m = msg(4, &[]);
    m[3] = 0xfe;
    assert_eq!(frame(&m, MAX_MESSAGE_LEN), Err(WireError::BadMarker));
    // A bad marker is reported as soon as its bytes arrive, before the header is complete.
    assert_eq!(frame(&m[..5], MAX_MESSAGE_LEN), Err(WireError::BadMarker));
    assert_eq!(decode(&m, &EBGP), Err(WireError::BadMarker));
    assert_notification(&WireError::BadMarker, err::MESSAGE_HEADER, err::header::CONNECTION_NOT_SYNCHRONIZED, &[]);
}

#[test]
fn length_below_19_is_bad_message_length_with_the_length_as_data() {
    // RFC 4271 §6.1: "the Data field MUST contain the erroneous Length field".
    let mut m = msg(4, &[]);
    m[16..18].copy_from_slice(&18u16.to_be_bytes());
    assert_eq!(frame(&m, MAX_MESSAGE_LEN), Err(WireError::BadLength(18)));
    assert_eq!(decode(&m, &EBGP), Err(WireError::BadLength(18)));
    assert_notification(&WireError::BadLength(18), err::MESSAGE_HEADER, err::header::BAD_MESSAGE_LENGTH, &[0, 18]);
}

#[test]
fn length_above_4096_is_bad_message_length_at_the_framing_stage() {
    // Only the header is needed to reject it: framing does not wait for 4097 bytes.
    let mut m = msg(2, &update_body(&[], &[], &[]));
    m[16..18].copy_from_slice(&4097u16.to_be_bytes());
    assert_eq!(frame(&m, MAX_MESSAGE_LEN), Err(WireError::BadLength(4097)));
    assert_notification(
        &WireError::BadLength(4097),
        err::MESSAGE_HEADER,
        err::header::BAD_MESSAGE_LENGTH,
        &[0x10, 0x01],
    );
    // Exactly 4096 is legal (and incomplete here).
    m[16..18].copy_from_slice(&4096u16.to_be_bytes());
    assert_eq!(frame(&m, MAX_MESSAGE_LEN), Ok(None));
}

#[test]
fn keepalive_with_a_body_is_bad_message_length() {
    // RFC 4271 §6.1: a KEEPALIVE whose length is not 19.
    let m = msg(4, &[0]);
    assert_eq!(frame(&m, MAX_MESSAGE_LEN), Err(WireError::BadLength(20)));
    assert_eq!(decode(&m, &EBGP), Err(WireError::BadLength(20)));
    assert_notification(&WireError::BadLength(20), err::MESSAGE_HEADER, err::header::BAD_MESSAGE_LENGTH, &[0, 20]);
}

#[test]
fn per_type_minimum_lengths_are_bad_message_length() {
    // RFC 4271 §6.1: OPEN < 29, UPDATE < 23, NOTIFICATION < 21.
    for (ty, body_len, len) in [(1u8, 9usize, 28u16), (2, 3, 22), (3, 1, 20)] {
        let m = msg(ty, &vec![0; body_len]);
        assert_eq!(frame(&m, MAX_MESSAGE_LEN), Err(WireError::BadLength(len)), "type {ty}");
        assert_eq!(decode(&m, &EBGP), Err(WireError::BadLength(len)), "type {ty}");
    }
}

#[test]
fn unknown_message_type_is_bad_message_type_with_the_type_as_data() {
    let m = msg(6, &[]);
    assert_eq!(frame(&m, MAX_MESSAGE_LEN), Err(WireError::BadType(6)));
    assert_eq!(decode(&m, &EBGP), Err(WireError::BadType(6)));
    assert_notification(&WireError::BadType(6), err::MESSAGE_HEADER, err::header::BAD_MESSAGE_TYPE, &[6]);
}

// ---------------------------------------------------------------------------------------------------------------
// OPEN (RFC 4271 §6.2)

fn open_body(version: u8, opt: &[u8]) -> Vec<u8> {
    let mut b = vec![version, 0xfd, 0xe9, 0, 90, 192, 0, 2, 1, u8::try_from(opt.len()).expect("fits")];
    b.extend_from_slice(opt);
    b
}

#[test]
fn open_version_3_is_unsupported_version_with_our_version_as_data() {
    // RFC 4271 §6.2: the data is the largest supported version below the bid or, when every supported
    // version is above it, the smallest supported one: 4 either way, as a 2-octet integer.
    let m = msg(1, &open_body(3, &[]));
    assert_eq!(decode(&m, &EBGP), Err(WireError::UnsupportedVersion(3)));
    assert_notification(&WireError::UnsupportedVersion(3), err::OPEN_MESSAGE, err::open::UNSUPPORTED_VERSION, &[0, 4]);
}

#[test]
fn open_optional_parameter_overrun_is_open_message_error_unspecific() {
    // Opt Parm Len says 8; the parameter that follows claims 6 bytes of value but only 4 are there.
    let mut body = open_body(4, &[2, 6, 65, 4, 0, 0]);
    body[9] = 8;
    body.truncate(10 + 6);
    let m = msg(1, &body);
    assert_eq!(decode(&m, &EBGP), Err(WireError::MalformedOpen));
    // A parameter whose own length runs past Opt Parm Len is the same error.
    let m = msg(1, &open_body(4, &[2, 7, 65, 4, 0, 0, 0xfd, 0xe9]));
    assert_eq!(decode(&m, &EBGP), Err(WireError::MalformedOpen));
    assert_notification(&WireError::MalformedOpen, err::OPEN_MESSAGE, err::open::UNSPECIFIC, &[]);
}

#[test]
fn unknown_optional_parameter_is_unsupported_optional_parameter() {
    // Type 1 was Authentication Information (RFC 1771), deprecated by RFC 4271.
    let m = msg(1, &open_body(4, &[1, 2, 0xab, 0xcd]));
    assert_eq!(decode(&m, &EBGP), Err(WireError::UnsupportedOptionalParameter(1)));
    assert_notification(
        &WireError::UnsupportedOptionalParameter(1),
        err::OPEN_MESSAGE,
        err::open::UNSUPPORTED_OPTIONAL_PARAMETER,
        &[],
    );
}

// ---------------------------------------------------------------------------------------------------------------
// UPDATE structure (RFC 4271 §6.3, RFC 7606 §4)

#[test]
fn withdrawn_routes_length_overrun_is_malformed_attribute_list() {
    // Withdrawn Routes Length 10 with only 6 bytes left in the message.
    let mut body = update_body(&[24, 198, 51, 100], &[], &[]);
    body[0..2].copy_from_slice(&10u16.to_be_bytes());
    let m = msg(2, &body);
    assert_eq!(decode(&m, &EBGP), Err(WireError::MalformedAttributeList));
    assert_notification(
        &WireError::MalformedAttributeList,
        err::UPDATE_MESSAGE,
        err::update::MALFORMED_ATTRIBUTE_LIST,
        &[],
    );
}

#[test]
fn total_attribute_length_overrun_is_malformed_attribute_list() {
    // RFC 4271 §6.3: Withdrawn Routes Length + Total Attribute Length + 23 exceeds the message length.
    let attrs = mandatory();
    let mut body = update_body(&[], &attrs, &[]);
    body[2..4].copy_from_slice(&u16::try_from(attrs.len() + 1).expect("fits").to_be_bytes());
    let m = msg(2, &body);
    assert_eq!(decode(&m, &EBGP), Err(WireError::MalformedAttributeList));
}

#[test]
fn nlri_prefix_length_33_is_invalid_network_field() {
    let m = update(&mandatory(), &[33, 198, 51, 100, 0, 0]);
    assert_eq!(decode(&m, &EBGP), Err(WireError::InvalidNetworkField));
    assert_notification(&WireError::InvalidNetworkField, err::UPDATE_MESSAGE, err::update::INVALID_NETWORK_FIELD, &[]);
    // The same in Withdrawn Routes, and a prefix whose bytes run out.
    let m = msg(2, &update_body(&[33, 1, 2, 3, 4, 5], &[], &[]));
    assert_eq!(decode(&m, &EBGP), Err(WireError::InvalidNetworkField));
    let m = update(&mandatory(), &[24, 198, 51]);
    assert_eq!(decode(&m, &EBGP), Err(WireError::InvalidNetworkField));
}

#[test]
fn attribute_header_overrun_without_mp_attribute_is_treat_as_withdraw() {
    // RFC 7606 §4: the last attribute claims more than the Total Attribute Length leaves. The NLRI can still
    // be found from the Total Attribute Length, so the routes are withdrawn and the session stays up.
    let mut attrs = mandatory();
    attrs.extend_from_slice(&[OPT_T, code::COMMUNITIES, 8, 0xfd, 0xe9]); // 8 claimed, 2 present
    let u = decode_update(&update(&attrs, NLRI), &EBGP);
    assert_single_fault(
        &u,
        AttrFault { code: 0, verdict: Verdict::TreatAsWithdraw, error: WireError::MalformedAttributeList },
    );
    assert!(u.treat_as_withdraw());
    assert_eq!(u.nlri, vec!["198.51.100.0/24".parse().expect("prefix")]);
    // Fewer than three octets left for an attribute header (RFC 7606 §4, second case): the same.
    let mut attrs = mandatory();
    attrs.extend_from_slice(&[OPT_T, code::COMMUNITIES]);
    let u = decode_update(&update(&attrs, NLRI), &EBGP);
    assert_single_fault(
        &u,
        AttrFault { code: 0, verdict: Verdict::TreatAsWithdraw, error: WireError::MalformedAttributeList },
    );
}

#[test]
fn attribute_header_overrun_after_mp_attribute_is_session_reset() {
    // Once MP_REACH_NLRI has been seen, the unreadable tail could hide MP_UNREACH_NLRI routes that can then
    // be neither used nor withdrawn: the codec resets the session.
    let mut attrs = mp_reach_v6();
    attrs.extend_from_slice(&origin_igp());
    attrs.extend_from_slice(&[OPT_T, code::COMMUNITIES, 8, 0xfd, 0xe9]);
    assert_eq!(decode(&update(&attrs, &[]), &EBGP), Err(WireError::MalformedAttributeList));
}

// ---------------------------------------------------------------------------------------------------------------
// Well-known mandatory attributes (RFC 7606 §7.1–7.3)

#[test]
fn origin_value_3_is_treat_as_withdraw_invalid_origin() {
    let bad = attr(WK, code::ORIGIN, &[3]);
    let attrs = [bad.clone(), as_path(&[65001]), next_hop()].concat();
    let u = decode_update(&update(&attrs, NLRI), &EBGP);
    // RFC 7606 §7.1; the error keeps the RFC 4271 §6.3 data: the whole attribute.
    assert_single_fault(
        &u,
        AttrFault {
            code: code::ORIGIN,
            verdict: Verdict::TreatAsWithdraw,
            error: WireError::InvalidOrigin(bad.clone()),
        },
    );
    assert!(u.treat_as_withdraw());
    assert_notification(
        &WireError::InvalidOrigin(bad.clone()),
        err::UPDATE_MESSAGE,
        err::update::INVALID_ORIGIN_ATTRIBUTE,
        &bad,
    );
}

#[test]
fn origin_length_2_is_treat_as_withdraw_attribute_length() {
    let bad = attr(WK, code::ORIGIN, &[0, 0]);
    let attrs = [bad.clone(), as_path(&[65001]), next_hop()].concat();
    let u = decode_update(&update(&attrs, NLRI), &EBGP);
    let error = WireError::AttributeLength { code: code::ORIGIN, data: bad.clone() };
    assert_single_fault(&u, AttrFault { code: code::ORIGIN, verdict: Verdict::TreatAsWithdraw, error: error.clone() });
    assert_notification(&error, err::UPDATE_MESSAGE, err::update::ATTRIBUTE_LENGTH_ERROR, &bad);
}

fn as_path_fault(value: &[u8]) {
    let attrs = [origin_igp(), attr(WK, code::AS_PATH, value), next_hop()].concat();
    let u = decode_update(&update(&attrs, NLRI), &EBGP);
    assert_single_fault(
        &u,
        AttrFault { code: code::AS_PATH, verdict: Verdict::TreatAsWithdraw, error: WireError::MalformedAsPath },
    );
    assert!(u.treat_as_withdraw());
}

#[test]
fn as_path_bad_segment_type_is_treat_as_withdraw_malformed_as_path() {
    // RFC 7606 §7.2: segment type 5 is undefined.
    as_path_fault(&[5, 1, 0, 0, 0xfd, 0xe9]);
    assert_notification(&WireError::MalformedAsPath, err::UPDATE_MESSAGE, err::update::MALFORMED_AS_PATH, &[]);
}

#[test]
fn as_path_zero_length_segment_is_treat_as_withdraw() {
    as_path_fault(&[2, 0]);
    as_path_fault(&[2, 1, 0, 0, 0xfd, 0xe9, 2, 0]);
}

#[test]
fn as_path_segment_overrun_is_treat_as_withdraw() {
    // Two ASNs claimed, one present; and a lone trailing octet (RFC 7606 §7.2 "one octet" underrun).
    as_path_fault(&[2, 2, 0, 0, 0xfd, 0xe9]);
    as_path_fault(&[2, 1, 0, 0, 0xfd, 0xe9, 2]);
}

#[test]
fn as_path_of_two_octet_session_is_read_with_two_octet_asns() {
    // The same bytes are a valid 2-octet path and an overrun 4-octet one: the width comes from the context.
    let value = [2, 2, 0xfd, 0xe9, 0xfd, 0xea];
    let attrs = [origin_igp(), attr(WK, code::AS_PATH, &value), next_hop()].concat();
    let two = DecodeCtx { four_octet_as: false, ibgp: false };
    let u = decode_update(&update(&attrs, NLRI), &two);
    assert!(u.faults.is_empty());
    assert_eq!(u.attrs.as_path.and_then(|p| p.first_as()), Some(65001));
    as_path_fault(&value);
}

#[test]
fn next_hop_length_5_is_treat_as_withdraw_attribute_length() {
    let bad = attr(WK, code::NEXT_HOP, &[192, 0, 2, 1, 0]);
    let attrs = [origin_igp(), as_path(&[65001]), bad.clone()].concat();
    let u = decode_update(&update(&attrs, NLRI), &EBGP);
    assert_single_fault(
        &u,
        AttrFault {
            code: code::NEXT_HOP,
            verdict: Verdict::TreatAsWithdraw,
            error: WireError::AttributeLength { code: code::NEXT_HOP, data: bad },
        },
    );
}

#[test]
fn missing_origin_as_path_or_next_hop_with_nlri_is_treat_as_withdraw_missing_well_known() {
    // RFC 7606 §3 (d); the NOTIFICATION data would be the missing type code (RFC 4271 §6.3).
    for (missing, attrs) in [
        (code::ORIGIN, [as_path(&[65001]), next_hop()].concat()),
        (code::AS_PATH, [origin_igp(), next_hop()].concat()),
        (code::NEXT_HOP, [origin_igp(), as_path(&[65001])].concat()),
    ] {
        let u = decode_update(&update(&attrs, NLRI), &EBGP);
        assert_single_fault(
            &u,
            AttrFault {
                code: missing,
                verdict: Verdict::TreatAsWithdraw,
                error: WireError::MissingWellKnownAttribute(missing),
            },
        );
        assert_notification(
            &WireError::MissingWellKnownAttribute(missing),
            err::UPDATE_MESSAGE,
            err::update::MISSING_WELL_KNOWN_ATTRIBUTE,
            &[missing],
        );
        // Without reachability nothing is mandatory: a withdrawal with the same attributes is fine.
        let w = decode_update(&msg(2, &update_body(NLRI, &attrs, &[])), &EBGP);
        assert!(w.faults.is_empty(), "{w:?}");
    }
}

#[test]
fn missing_next_hop_is_fine_when_reachability_is_only_in_mp_reach() {
    // RFC 4760 §3: NEXT_HOP belongs to the legacy NLRI field only.
    let attrs = [mp_reach_v6(), origin_igp(), as_path(&[65001])].concat();
    let u = decode_update(&update(&attrs, &[]), &EBGP);
    assert!(u.faults.is_empty(), "{u:?}");
    // But ORIGIN and AS_PATH are still required for MP reachability.
    let u = decode_update(&update(&[mp_reach_v6(), origin_igp()].concat(), &[]), &EBGP);
    assert_eq!(u.faults.len(), 1);
    assert_eq!(u.faults[0].error, WireError::MissingWellKnownAttribute(code::AS_PATH));
}

#[test]
fn origin_with_optional_bit_is_treat_as_withdraw_attribute_flags_error() {
    // RFC 7606 §3 (c): a flags conflict is handled as a malformed attribute, i.e. by the attribute's own
    // verdict (treat-as-withdraw for ORIGIN); the data is the whole attribute (RFC 4271 §6.3).
    let bad = attr(OPT_T, code::ORIGIN, &[0]);
    let attrs = [bad.clone(), as_path(&[65001]), next_hop()].concat();
    let u = decode_update(&update(&attrs, NLRI), &EBGP);
    let error = WireError::AttributeFlags { code: code::ORIGIN, data: bad.clone() };
    assert_single_fault(&u, AttrFault { code: code::ORIGIN, verdict: Verdict::TreatAsWithdraw, error: error.clone() });
    assert!(u.treat_as_withdraw());
    assert_notification(&error, err::UPDATE_MESSAGE, err::update::ATTRIBUTE_FLAGS_ERROR, &bad);
    // The Partial bit on a well-known attribute is a flags error too (RFC 4271 §4.3).
    let bad = attr(WK | flag::PARTIAL, code::ORIGIN, &[0]);
    let attrs = [bad.clone(), as_path(&[65001]), next_hop()].concat();
    let u = decode_update(&update(&attrs, NLRI), &EBGP);
    assert_eq!(u.faults[0].error, WireError::AttributeFlags { code: code::ORIGIN, data: bad });
}

#[test]
fn unrecognized_well_known_attribute_is_session_reset() {
    // RFC 4271 §6.3: data is the unrecognized attribute (type, length and value).
    let unknown = attr(WK, 99, &[1, 2, 3]);
    let attrs = [mandatory(), unknown.clone()].concat();
    let e = WireError::UnrecognizedWellKnownAttribute { code: 99, data: unknown.clone() };
    assert_eq!(decode(&update(&attrs, NLRI), &EBGP), Err(e.clone()));
    assert_notification(&e, err::UPDATE_MESSAGE, err::update::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE, &unknown);
    // An unrecognized optional one is kept as it came.
    let u = decode_update(&update(&[mandatory(), attr(OPT_T, 99, &[1, 2, 3])].concat(), NLRI), &EBGP);
    assert!(u.faults.is_empty());
    assert_eq!(u.attrs.other.len(), 1);
}

// ---------------------------------------------------------------------------------------------------------------
// MED, LOCAL_PREF (RFC 7606 §7.4, §7.5)

#[test]
fn med_length_3_is_treat_as_withdraw_attribute_length() {
    let bad = attr(OPT, code::MULTI_EXIT_DISC, &[0, 0, 1]);
    let u = decode_update(&update(&[mandatory(), bad.clone()].concat(), NLRI), &EBGP);
    assert_single_fault(
        &u,
        AttrFault {
            code: code::MULTI_EXIT_DISC,
            verdict: Verdict::TreatAsWithdraw,
            error: WireError::AttributeLength { code: code::MULTI_EXIT_DISC, data: bad },
        },
    );
    assert_eq!(u.attrs.med, None);
}

#[test]
fn local_pref_from_ebgp_is_discarded_silently() {
    // RFC 7606 §7.5: "If the LOCAL_PREF attribute is received from an external neighbor, it SHALL be
    // discarded using the approach of 'attribute discard'" — a correct one as well as a malformed one.
    let u = decode_update(&update(&[mandatory(), local_pref(200)].concat(), NLRI), &EBGP);
    assert!(u.faults.is_empty());
    assert_eq!(u.attrs.local_pref, None);
    for bad in [attr(WK, code::LOCAL_PREF, &[0, 0, 1]), attr(OPT_T, code::LOCAL_PREF, &[0, 0, 0, 1])] {
        let u = decode_update(&update(&[mandatory(), bad].concat(), NLRI), &EBGP);
        assert!(u.faults.is_empty(), "{u:?}");
        assert!(!u.treat_as_withdraw());
        assert_eq!(u.attrs.local_pref, None);
    }
}

#[test]
fn local_pref_length_error_from_ibgp_is_treat_as_withdraw() {
    let bad = attr(WK, code::LOCAL_PREF, &[0, 0, 1]);
    let u = decode_update(&update(&[mandatory(), bad.clone()].concat(), NLRI), &IBGP);
    // One fault only: the length error. It already withdraws the routes, so the then-missing LOCAL_PREF is
    // not reported again.
    assert_single_fault(
        &u,
        AttrFault {
            code: code::LOCAL_PREF,
            verdict: Verdict::TreatAsWithdraw,
            error: WireError::AttributeLength { code: code::LOCAL_PREF, data: bad },
        },
    );
}

#[test]
fn missing_local_pref_on_ibgp_is_treat_as_withdraw() {
    // RFC 4271 §5.1.5 makes LOCAL_PREF mandatory towards internal peers; RFC 7606 §3 (d) then applies.
    let u = decode_update(&update(&mandatory(), NLRI), &IBGP);
    assert_single_fault(
        &u,
        AttrFault {
            code: code::LOCAL_PREF,
            verdict: Verdict::TreatAsWithdraw,
            error: WireError::MissingWellKnownAttribute(code::LOCAL_PREF),
        },
    );
    let u = decode_update(&update(&[mandatory(), local_pref(100)].concat(), NLRI), &IBGP);
    assert!(u.faults.is_empty());
    assert_eq!(u.attrs.local_pref, Some(100));
}

// ---------------------------------------------------------------------------------------------------------------
// Discretionary and optional attributes (RFC 7606 §7.6–7.8, RFC 6793, RFC 8092)

#[test]
fn atomic_aggregate_with_a_body_is_attribute_discard() {
    let bad = attr(WK, code::ATOMIC_AGGREGATE, &[1]);
    let u = decode_update(&update(&[mandatory(), bad.clone()].concat(), NLRI), &EBGP);
    assert_single_fault(
        &u,
        AttrFault {
            code: code::ATOMIC_AGGREGATE,
            verdict: Verdict::AttributeDiscard,
            error: WireError::AttributeLength { code: code::ATOMIC_AGGREGATE, data: bad },
        },
    );
    assert!(!u.treat_as_withdraw());
    assert!(!u.attrs.atomic_aggregate);
}

#[test]
fn aggregator_bad_length_is_attribute_discard() {
    // 8 octets on a 4-octet session, 6 on a 2-octet one (RFC 7606 §7.7); 6 on a 4-octet session is wrong.
    let bad = attr(OPT_T, code::AGGREGATOR, &[0xfd, 0xe9, 192, 0, 2, 1]);
    let u = decode_update(&update(&[mandatory(), bad.clone()].concat(), NLRI), &EBGP);
    assert_single_fault(
        &u,
        AttrFault {
            code: code::AGGREGATOR,
            verdict: Verdict::AttributeDiscard,
            error: WireError::AttributeLength { code: code::AGGREGATOR, data: bad },
        },
    );
    assert_eq!(u.attrs.aggregator, None);
    assert!(!u.treat_as_withdraw());
    let good = attr(OPT_T, code::AGGREGATOR, &[0, 0, 0xfd, 0xe9, 192, 0, 2, 1]);
    let u = decode_update(&update(&[mandatory(), good].concat(), NLRI), &EBGP);
    assert_eq!(u.attrs.aggregator, Some((65001, Ipv4Addr::new(192, 0, 2, 1))));
}

#[test]
fn communities_length_5_is_treat_as_withdraw() {
    // RFC 7606 §7.8: not a non-zero multiple of 4.
    let bad = attr(OPT_T, code::COMMUNITIES, &[0xfd, 0xe9, 0, 1, 0]);
    let u = decode_update(&update(&[mandatory(), bad.clone()].concat(), NLRI), &EBGP);
    assert_single_fault(
        &u,
        AttrFault {
            code: code::COMMUNITIES,
            verdict: Verdict::TreatAsWithdraw,
            error: WireError::AttributeLength { code: code::COMMUNITIES, data: bad },
        },
    );
    let empty = attr(OPT_T, code::COMMUNITIES, &[]);
    let u = decode_update(&update(&[mandatory(), empty].concat(), NLRI), &EBGP);
    assert!(u.treat_as_withdraw());
}

#[test]
fn duplicate_communities_keeps_the_first_and_discards_the_second() {
    // RFC 7606 §3 (g): every occurrence but the first is discarded and the UPDATE processed.
    let first = attr(OPT_T, code::COMMUNITIES, &[0xfd, 0xe9, 0, 1]);
    let second = attr(OPT_T, code::COMMUNITIES, &[0xfd, 0xe9, 0, 2]);
    let u = decode_update(&update(&[mandatory(), first, second].concat(), NLRI), &EBGP);
    assert_single_fault(
        &u,
        AttrFault {
            code: code::COMMUNITIES,
            verdict: Verdict::AttributeDiscard,
            error: WireError::MalformedAttributeList,
        },
    );
    assert_eq!(u.attrs.communities, Some(vec![0xfde9_0001]));
    assert!(!u.treat_as_withdraw());
}

#[test]
fn large_communities_length_13_is_treat_as_withdraw() {
    // RFC 8092 §6: not a non-zero multiple of 12.
    let bad = attr(OPT_T, code::LARGE_COMMUNITIES, &[0; 13]);
    let u = decode_update(&update(&[mandatory(), bad.clone()].concat(), NLRI), &EBGP);
    assert_single_fault(
        &u,
        AttrFault {
            code: code::LARGE_COMMUNITIES,
            verdict: Verdict::TreatAsWithdraw,
            error: WireError::AttributeLength { code: code::LARGE_COMMUNITIES, data: bad },
        },
    );
}

#[test]
fn malformed_as4_path_is_attribute_discard() {
    // RFC 6793 §6: a malformed AS4_PATH, or one with confederation segments, is discarded ("attribute
    // discard"); the routes stay. Checked on a 2-octet session, the only kind that should carry AS4_PATH.
    let two = DecodeCtx { four_octet_as: false, ibgp: false };
    let attrs2 = [origin_igp(), attr(WK, code::AS_PATH, &[2, 1, 0x5b, 0xa0]), next_hop()].concat();
    for value in [vec![2u8, 2, 0xfa, 0x56, 0xea, 0x00], vec![3, 1, 0xfa, 0x56, 0xea, 0x00], vec![2, 0]] {
        let bad = attr(OPT_T, code::AS4_PATH, &value);
        let u = decode_update(&update(&[attrs2.clone(), bad].concat(), NLRI), &two);
        assert_single_fault(
            &u,
            AttrFault { code: code::AS4_PATH, verdict: Verdict::AttributeDiscard, error: WireError::MalformedAsPath },
        );
        assert_eq!(u.attrs.as4_path, None);
        assert!(!u.treat_as_withdraw());
    }
}

// ---------------------------------------------------------------------------------------------------------------
// MP_REACH_NLRI / MP_UNREACH_NLRI (RFC 4760 §7, RFC 7606 §3 (g), §7.11)

#[test]
fn mp_reach_bad_next_hop_length_is_session_reset_optional_attribute_error() {
    // RFC 7606 §7.11: with a bad next hop length the NLRI cannot be located, so session reset; RFC 4760 §7
    // names the subcode (Optional Attribute Error) and RFC 4271 §6.3 the data: the whole attribute.
    let mut v = vec![0, 2, 1, 5];
    v.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0x00]);
    v.push(0);
    v.extend_from_slice(&[48, 0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00]);
    let bad = attr(OPT, code::MP_REACH_NLRI, &v);
    let e = WireError::OptionalAttribute { code: code::MP_REACH_NLRI, data: bad.clone() };
    let attrs = [bad.clone(), origin_igp(), as_path(&[65001])].concat();
    assert_eq!(decode(&update(&attrs, &[]), &EBGP), Err(e.clone()));
    assert_notification(&e, err::UPDATE_MESSAGE, err::update::OPTIONAL_ATTRIBUTE_ERROR, &bad);
    // IPv6 NLRI with a 4-byte (IPv4) next hop is the same error.
    let mut v = vec![0, 2, 1, 4, 192, 0, 2, 1, 0];
    v.extend_from_slice(&[48, 0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00]);
    let bad = attr(OPT, code::MP_REACH_NLRI, &v);
    let attrs = [bad.clone(), origin_igp(), as_path(&[65001])].concat();
    assert_eq!(
        decode(&update(&attrs, &[]), &EBGP),
        Err(WireError::OptionalAttribute { code: code::MP_REACH_NLRI, data: bad })
    );
}

#[test]
fn mp_reach_truncated_is_session_reset_optional_attribute_error() {
    let bad = attr(OPT, code::MP_REACH_NLRI, &[0, 2, 1, 16, 0x20, 0x01]);
    assert_eq!(
        decode(&update(&bad, &[]), &EBGP),
        Err(WireError::OptionalAttribute { code: code::MP_REACH_NLRI, data: bad })
    );
}

#[test]
fn duplicate_mp_reach_is_malformed_attribute_list() {
    let attrs = [mp_reach_v6(), origin_igp(), as_path(&[65001]), mp_reach_v6()].concat();
    assert_eq!(decode(&update(&attrs, &[]), &EBGP), Err(WireError::MalformedAttributeList));
    let unreach = attr(OPT, code::MP_UNREACH_NLRI, &[0, 2, 1]);
    let attrs = [unreach.clone(), unreach].concat();
    assert_eq!(decode(&update(&attrs, &[]), &EBGP), Err(WireError::MalformedAttributeList));
}

#[test]
fn mp_reach_flags_error_is_session_reset() {
    // MP_REACH_NLRI's verdict is session reset, and RFC 7606 §3 (c) hands flags errors to that verdict.
    let mut bad = mp_reach_v6();
    bad[0] = OPT_T;
    let e = WireError::AttributeFlags { code: code::MP_REACH_NLRI, data: bad.clone() };
    assert_eq!(decode(&update(&[bad, origin_igp(), as_path(&[65001])].concat(), &[]), &EBGP), Err(e));
}

// ---------------------------------------------------------------------------------------------------------------
// ROUTE-REFRESH (RFC 7313 §5)

#[test]
fn route_refresh_wrong_length_is_invalid_message_length_with_the_message_as_data() {
    for body in [vec![0u8, 1, 0], vec![0, 1, 0, 1, 0]] {
        let m = msg(5, &body);
        let e = WireError::MalformedRouteRefresh(m.clone());
        assert_eq!(decode(&m, &EBGP), Err(e.clone()));
        assert_notification(&e, err::ROUTE_REFRESH, err::route_refresh::INVALID_MESSAGE_LENGTH, &m);
    }
}
