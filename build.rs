//! Compiles `proto/speaker/v1/*.proto` with protox (pure Rust: no `protoc` on the build machine) and
//! writes the encoded FileDescriptorSet beside the generated code for tonic-reflection.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/speaker/v1/speaker.proto"];
    let fds = protox::compile(protos, ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("speaker_v1_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
