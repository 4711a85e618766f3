//! Compiles the protos with protox (pure Rust: no `protoc` on the build machine) and writes each
//! package's encoded FileDescriptorSet beside the generated code for tonic-reflection:
//! `proto/speaker/v1` (speakerd's own API) and `proto/gobgp/v3` (the GoBGP v3 compatible API, package
//! `apipb`).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let sets: [(&str, &[&str]); 2] = [
        ("speaker_v1_descriptor.bin", &["proto/speaker/v1/speaker.proto"]),
        ("gobgp_v3_descriptor.bin", &["proto/gobgp/v3/gobgp.proto", "proto/gobgp/v3/attribute.proto"]),
    ];
    for (bin, protos) in sets {
        let fds = protox::compile(protos, ["proto"])?;
        std::fs::write(out.join(bin), prost::Message::encode_to_vec(&fds))?;
        tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
        for p in protos {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
