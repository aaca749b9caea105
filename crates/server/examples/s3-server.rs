//! A real S3 server on loopback for benchmarks and multi-process tests: s3s-fs (objects as files
//! under ROOT) behind s3s's SigV4-checking HTTP service. Not for production.
//!
//!   cargo run --release -p keel-server --example s3-server -- ROOT 127.0.0.1:9000 [BUCKET...]
//!
//! Prints `endpoint=... access_key=... secret_key=... region=...` and serves until killed.
//! Credentials are fixed (tests/it/common/s3.rs).

#[path = "../tests/it/common/s3.rs"]
mod s3;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(root), Some(listen)) = (args.first(), args.get(1)) else {
        eprintln!("usage: s3-server ROOT ADDR:PORT [BUCKET...]");
        std::process::exit(2);
    };
    let addr = match listen.parse() {
        Ok(addr) => addr,
        Err(err) => {
            eprintln!("s3-server: {listen:?}: {err}");
            std::process::exit(2);
        }
    };
    if let Err(err) = std::fs::create_dir_all(root) {
        eprintln!("s3-server: creating {root}: {err}");
        std::process::exit(1);
    }
    let server = s3::S3Server::start_at(std::path::Path::new(root), addr);
    for bucket in &args[2..] {
        server.create_bucket(bucket);
    }
    println!(
        "endpoint={} access_key={} secret_key={} region={}",
        server.endpoint,
        s3::ACCESS_KEY,
        s3::SECRET_KEY,
        s3::REGION
    );
    loop {
        std::thread::park();
    }
}
