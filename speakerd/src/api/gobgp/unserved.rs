//! The GobgpApi surface speakerd does not serve: every method outside [`SERVED`] is answered
//! UNIMPLEMENTED with the reason, before tonic's generated server sees it.
use std::pin::Pin;
use tonic::Status;

/// The GobgpApi methods speakerd serves.
pub const SERVED: &[&str] = &[
    "StartBgp",
    "StopBgp",
    "GetBgp",
    "WatchEvent",
    "AddPeer",
    "DeletePeer",
    "ListPeer",
    "UpdatePeer",
    "ResetPeer",
    "ShutdownPeer",
    "EnablePeer",
    "DisablePeer",
    "AddPath",
    "DeletePath",
    "ListPath",
    "AddPathStream",
    "GetTable",
];

/// Why speakerd does not serve a GobgpApi method.
pub fn unserved_reason(method: &str) -> String {
    let why = match method {
        m if m.contains("PeerGroup") || m.contains("DynamicNeighbor") => {
            "peer groups and dynamic neighbors are not supported: add each peer with AddPeer"
        }
        m if m.contains("Vrf") => "speakerd has no VRFs",
        m if m.contains("Policy") || m.contains("DefinedSet") || m.contains("Statement") || m == "SetPolicies" => {
            "routing policies are not supported: speakerd originates its routes; choose the peers of an announcement with speaker.v1's peers selector"
        }
        m if m.contains("Rpki") => "RPKI is not supported: speakerd does not use received routes",
        "EnableZebra" => "speakerd does not install routes into the kernel (no zebra)",
        m if m.contains("Mrt") => "MRT dumps are not supported",
        m if m.contains("Bmp") => "BMP is not supported; see speakerd's metrics and speaker.v1 Watch",
        "SetLogLevel" => "set the log level with RUST_LOG when starting speakerd",
        _ => "not part of what speakerd serves",
    };
    format!("speakerd does not implement apipb.GobgpApi/{method}: {why} (docs/GOBGP_API.md lists what it serves)")
}

/// The GobgpApi server, answering the methods it does not serve UNIMPLEMENTED with the reason
/// ([`unserved_reason`]) rather than tonic's bare status.
#[derive(Clone)]
pub struct WithReasons<S>(pub S);

impl<S> tonic::server::NamedService for WithReasons<S> {
    const NAME: &'static str = "apipb.GobgpApi";
}

impl<S, B> tower::Service<tonic::codegen::http::Request<B>> for WithReasons<S>
where
    S: tower::Service<
            tonic::codegen::http::Request<B>,
            Response = tonic::codegen::http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + Send,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: tonic::codegen::http::Request<B>) -> Self::Future {
        let method = req.uri().path().rsplit('/').next().unwrap_or("").to_string();
        if SERVED.contains(&method.as_str()) {
            Box::pin(self.0.call(req))
        } else {
            let status = Status::unimplemented(unserved_reason(&method));
            Box::pin(async move { Ok(status.into_http()) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unserved_method_has_a_reason() {
        for m in
            ["AddVrf", "ListPolicy", "AddRpki", "EnableZebra", "EnableMrt", "AddBmp", "SetLogLevel", "AddPeerGroup"]
        {
            let r = unserved_reason(m);
            assert!(r.contains(m) && !r.contains("not part of"), "{r}");
        }
    }
}
